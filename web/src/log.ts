// One logging function for the whole SDK.

import type { LogLevel } from './types.js';

export type Logger = (level: LogLevel, msg: string) => void;

/** Warnings and errors to the console; debug and info are dropped. */
export const consoleLogger: Logger = (level, msg) => {
  if (level === 'error') console.error(`[shoal] ${msg}`);
  else if (level === 'warn') console.warn(`[shoal] ${msg}`);
};

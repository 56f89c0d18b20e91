// The classic-script build: `<script src="shoal.iife.js">` defines `window.Shoal`.
import { Shoal } from './shoal.js';

(globalThis as unknown as { Shoal: typeof Shoal }).Shoal = Shoal;

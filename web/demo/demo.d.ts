import { Shoal } from '../src/index.js';
declare global {
    interface Window {
        Hls: any;
        shoal?: Shoal;
        hls?: any;
    }
}

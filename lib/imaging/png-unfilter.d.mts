// Types of png-unfilter.mjs (plain JavaScript, so that decode threads can load it without a build).
export function unfilterRow(filter: number, row: Uint8Array, prior: Uint8Array, bpp: number): void;
export function decodeImageData(data: Uint8Array, height: number, rowBytes: number, bpp: number): { pixels: Uint8Array; rows: number };

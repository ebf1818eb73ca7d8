import { describe, expect, it } from 'vitest';
import { BitMask, simplifyRing, toGeoJsonRings, traceRegions, type PixelPolygon } from './polygons.js';

/** A mask from rows of '#' (changed) and '.' (unchanged). */
function maskOf(...rows: string[]): BitMask {
  const mask = new BitMask(rows[0]!.length, rows.length);
  rows.forEach((row, y) => [...row].forEach((c, x) => c === '#' && mask.set(x, y)));
  return mask;
}

const exact = { minRegionPixels: 0, simplifyTolerance: 0 };

/** Shoelace area of a GeoJSON ring (closed). */
function area(ring: [number, number][]): number {
  let sum = 0;
  for (let i = 0; i < ring.length - 1; i++) sum += ring[i]![0] * ring[i + 1]![1] - ring[i + 1]![0] * ring[i]![1];
  return sum / 2;
}

describe('traceRegions', () => {
  it('traces one pixel as a unit square and a rectangle by its four corners', () => {
    expect(traceRegions(maskOf('#'), exact).polygons).toEqual([{ outer: Int32Array.from([1, 0, 1, 1, 0, 1, 0, 0]), holes: [], pixels: 1, bbox: [0, 0, 1, 1] }]);
    const { polygons } = traceRegions(maskOf('....', '.##.', '.##.', '.##.'), exact);
    expect(polygons).toHaveLength(1);
    expect(Array.from(polygons[0]!.outer)).toEqual([3, 1, 3, 4, 1, 4, 1, 1]);
    expect(polygons[0]!.pixels).toBe(6);
  });

  it('keeps a hole as a ring of its own, and the region area excludes it', () => {
    const { polygons, regionsBeforeFilter } = traceRegions(maskOf('#####', '#...#', '#.#.#', '#...#', '#####'), exact);
    expect(regionsBeforeFilter).toBe(2); // the ring and the island inside its hole
    const ring = polygons.find((p) => p.holes.length > 0)!;
    expect(ring.pixels).toBe(16);
    expect(ring.holes).toHaveLength(1);
    const island = polygons.find((p) => p.holes.length === 0)!;
    expect(island.pixels).toBe(1);
    expect(island.bbox).toEqual([2, 2, 3, 3]);
  });

  it('separates regions that touch only at a corner, and the hole they close is background', () => {
    const diagonal = traceRegions(maskOf('#.', '.#'), exact);
    expect(diagonal.polygons.map((p) => p.pixels)).toEqual([1, 1]);
    // A ring closed only through corners: four regions, no hole.
    const corners = traceRegions(maskOf('.#.', '#.#', '.#.'), exact);
    expect(corners.polygons).toHaveLength(4);
    expect(corners.polygons.every((p) => p.holes.length === 0)).toBe(true);
  });

  it('counts pixels exactly on an irregular shape whose holes touch at corners (one background region)', () => {
    const rows = ['..####..', '.##..##.', '##.##.##', '##.##.##', '.######.', '...##...'];
    const mask = maskOf(...rows);
    const { polygons } = traceRegions(mask, exact);
    const total = rows.join('').split('').filter((c) => c === '#').length;
    expect(polygons.reduce((s, p) => s + p.pixels, 0)).toBe(total);
    expect(polygons.flatMap((p) => p.holes)).toHaveLength(1);
  });

  it('drops regions below the minimum size', () => {
    const result = traceRegions(maskOf('#....', '.....', '..###', '..###'), { minRegionPixels: 2, simplifyTolerance: 0 });
    expect(result.regionsBeforeFilter).toBe(2);
    expect(result.polygons.map((p) => p.pixels)).toEqual([6]);
  });

  it('touches the image border without leaving it', () => {
    const { polygons } = traceRegions(maskOf('##', '##'), exact);
    expect(polygons[0]!.bbox).toEqual([0, 0, 2, 2]);
  });
});

describe('simplifyRing', () => {
  it('straightens a staircase within the tolerance and keeps the corners of a square', () => {
    const { polygons } = traceRegions(maskOf('#.....', '##....', '###...', '####..', '#####.', '######'), exact);
    const stairs = Array.from(polygons[0]!.outer);
    expect(stairs.length / 2).toBe(14);
    expect(simplifyRing(stairs, 1).length / 2).toBeLessThanOrEqual(4);
    const square = [0, 0, 4, 0, 4, 4, 0, 4];
    expect(simplifyRing(square, 1)).toEqual(square);
  });
});

describe('toGeoJsonRings', () => {
  const polygon: PixelPolygon = traceRegions(maskOf('###', '#.#', '###'), exact).polygons[0]!;

  it('closes rings and orients them by the right-hand rule in map coordinates', () => {
    const rings = toGeoJsonRings(polygon, [500_000, 0.5, 0, 5_000_000, 0, -0.5]);
    expect(rings).toHaveLength(2);
    expect(rings[0]![0]).toEqual(rings[0]!.at(-1));
    expect(area(rings[0]!)).toBeCloseTo(9 * 0.25, 10); // exterior counter-clockwise (positive with y up)
    expect(area(rings[1]!)).toBeCloseTo(-0.25, 10); // hole clockwise
    const xs = rings[0]!.map((p) => p[0]);
    expect(Math.min(...xs)).toBe(500_000);
    expect(Math.max(...xs)).toBe(500_001.5);
  });

  it('keeps pixel coordinates without a transform', () => {
    const rings = toGeoJsonRings(polygon, null);
    expect(Math.abs(area(rings[0]!))).toBe(9);
    expect(Math.abs(area(rings[1]!))).toBe(1);
  });
});

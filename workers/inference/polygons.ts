// Turns a binary change mask into polygons: region boundaries are traced along pixel edges (crack following), so
// every ring is exact — its shoelace area is the region's pixel count — and holes come out as rings of their own.
// Changed pixels that touch only at a corner are separate regions (4-connectivity; the unchanged background is then
// 8-connected, the consistent pairing). Small regions are dropped, rings are simplified (Douglas–Peucker), and pixel
// corners are mapped to map coordinates with the raster's affine transform when it is georeferenced.
import { pixelToMap, type GeoTransform } from '../../lib/imaging/georef.js';

/** A W×H binary mask, one bit per pixel, row-major. */
export class BitMask {
  readonly bits: Uint8Array;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.bits = new Uint8Array(Math.ceil((width * height) / 8));
  }

  static fromArray(width: number, height: number, values: ArrayLike<number>): BitMask {
    const mask = new BitMask(width, height);
    for (let i = 0; i < width * height; i++) if (values[i]) mask.bits[i >> 3]! |= 1 << (i & 7);
    return mask;
  }

  /** False outside the image, so the border counts as background. */
  get(x: number, y: number): boolean {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return false;
    const i = y * this.width + x;
    return (this.bits[i >> 3]! & (1 << (i & 7))) !== 0;
  }

  set(x: number, y: number): void {
    const i = y * this.width + x;
    this.bits[i >> 3]! |= 1 << (i & 7);
  }
}

/** A closed ring of pixel-corner coordinates [x0, y0, x1, y1, …] (first point not repeated). */
export type Ring = number[];

export interface PixelPolygon {
  outer: Ring;
  holes: Ring[];
  /** Changed pixels of the region (outer area minus its holes). */
  pixels: number;
  /** Bounding box in pixels: [minX, minY, maxX, maxY] (corner coordinates). */
  bbox: [number, number, number, number];
}

export interface TraceOptions {
  /** Regions with fewer pixels are dropped (0 keeps all). */
  minRegionPixels: number;
  /** Douglas–Peucker tolerance in pixels (0: only collinear points are removed, which is lossless). */
  simplifyTolerance: number;
  /** Stop tracing after this many ring vertices (a noise-like mask); `truncated` says so. */
  maxVertices?: number;
}

export interface TraceResult {
  polygons: PixelPolygon[];
  /** All 4-connected changed regions, before the minimum-size filter. */
  regionsBeforeFilter: number;
  truncated: boolean;
}

// Directions: 0 east, 1 south, 2 west, 3 north (image coordinates, y down).
const DX = [1, 0, -1, 0];
const DY = [0, 1, 0, -1];

/**
 * Whether the boundary leaves vertex (vx, vy) in direction `d`, with the changed pixel on its right-hand side. Pixels
 * around the vertex: NW (vx-1, vy-1), NE (vx, vy-1), SW (vx-1, vy), SE (vx, vy).
 */
function leaves(mask: BitMask, vx: number, vy: number, d: number): boolean {
  switch (d) {
    case 0:
      return mask.get(vx, vy) && !mask.get(vx, vy - 1);
    case 1:
      return mask.get(vx - 1, vy) && !mask.get(vx, vy);
    case 2:
      return mask.get(vx - 1, vy - 1) && !mask.get(vx - 1, vy);
    default:
      return mask.get(vx, vy - 1) && !mask.get(vx - 1, vy - 1);
  }
}

function ringArea(ring: Ring): number {
  let sum = 0;
  const n = ring.length / 2;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    sum += ring[2 * i]! * ring[2 * j + 1]! - ring[2 * j]! * ring[2 * i + 1]!;
  }
  return sum / 2;
}

function ringBbox(ring: Ring): [number, number, number, number] {
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (let i = 0; i < ring.length; i += 2) {
    minX = Math.min(minX, ring[i]!);
    maxX = Math.max(maxX, ring[i]!);
    minY = Math.min(minY, ring[i + 1]!);
    maxY = Math.max(maxY, ring[i + 1]!);
  }
  return [minX, minY, maxX, maxY];
}

/** Even-odd point-in-ring test (the point is a pixel centre, never on a ring's edge). */
function contains(ring: Ring, x: number, y: number): boolean {
  let inside = false;
  const n = ring.length / 2;
  for (let i = 0, j = n - 1; i < n; j = i++) {
    const xi = ring[2 * i]!;
    const yi = ring[2 * i + 1]!;
    const xj = ring[2 * j]!;
    const yj = ring[2 * j + 1]!;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/**
 * Traces every boundary ring of the mask. Outer rings come out with positive shoelace area (clockwise on screen),
 * holes negative; each hole is attached to the smallest outer ring around it.
 */
export function traceRegions(mask: BitMask, options: TraceOptions): TraceResult {
  const { width: W, height: H } = mask;
  // One visited bit per pixel edge: horizontal edges (H+1)×W, vertical edges H×(W+1).
  const hVisited = new Uint8Array(Math.ceil(((H + 1) * W) / 8));
  const vVisited = new Uint8Array(Math.ceil((H * (W + 1)) / 8));
  const visit = (vx: number, vy: number, d: number): void => {
    // The edge from (vx, vy) in direction d.
    if (d === 0 || d === 2) {
      const x = d === 0 ? vx : vx - 1;
      const i = vy * W + x;
      hVisited[i >> 3]! |= 1 << (i & 7);
    } else {
      const y = d === 1 ? vy : vy - 1;
      const i = y * (W + 1) + vx;
      vVisited[i >> 3]! |= 1 << (i & 7);
    }
  };
  const hSeen = (x: number, y: number): boolean => {
    const i = y * W + x;
    return (hVisited[i >> 3]! & (1 << (i & 7))) !== 0;
  };

  const outers: { ring: Ring; area: number; bbox: [number, number, number, number]; holes: Ring[]; holeArea: number }[] = [];
  const holes: { ring: Ring; area: number; probe: [number, number] }[] = [];
  let vertices = 0;
  let truncated = false;
  const maxVertices = options.maxVertices ?? Number.POSITIVE_INFINITY;

  scan: for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      // Every ring, outer or hole, has at least one top edge of a changed pixel under an unchanged one.
      if (!mask.get(x, y) || mask.get(x, y - 1) || hSeen(x, y)) continue;
      const ring: Ring = [];
      const startX = x;
      const startY = y;
      let vx = x;
      let vy = y;
      let d = 0;
      do {
        visit(vx, vy, d);
        vx += DX[d]!;
        vy += DY[d]!;
        // Prefer turning right, then straight, then left: that keeps the changed pixels hugged (4-connectivity).
        const right = (d + 1) & 3;
        const left = (d + 3) & 3;
        const next = leaves(mask, vx, vy, right) ? right : leaves(mask, vx, vy, d) ? d : left;
        if (next !== d) ring.push(vx, vy);
        d = next;
      } while (vx !== startX || vy !== startY || d !== 0);
      vertices += ring.length / 2;
      const area = ringArea(ring);
      if (area > 0) outers.push({ ring, area, bbox: ringBbox(ring), holes: [], holeArea: 0 });
      // The unchanged pixel above the start edge lies inside the hole.
      else holes.push({ ring, area: -area, probe: [x + 0.5, y - 0.5] });
      if (vertices > maxVertices) {
        truncated = true;
        break scan;
      }
    }
  }

  // Smallest enclosing outer ring first: sort outers by area and take the first that contains the probe.
  const byArea = [...outers].sort((a, b) => a.area - b.area);
  for (const hole of holes) {
    const [px, py] = hole.probe;
    const parent = byArea.find((o) => px > o.bbox[0] && px < o.bbox[2] && py > o.bbox[1] && py < o.bbox[3] && contains(o.ring, px, py));
    if (!parent) continue; // cannot happen for a hole of a traced region; dropped rather than misattributed
    parent.holes.push(hole.ring);
    parent.holeArea += hole.area;
  }

  const polygons: PixelPolygon[] = [];
  for (const o of outers) {
    const pixels = Math.round(o.area - o.holeArea);
    if (pixels < options.minRegionPixels) continue;
    polygons.push({
      outer: simplifyRing(o.ring, options.simplifyTolerance),
      holes: o.holes.map((h) => simplifyRing(h, options.simplifyTolerance)),
      pixels,
      bbox: o.bbox,
    });
  }
  return { polygons, regionsBeforeFilter: outers.length, truncated };
}

function perpendicularDistance(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const dx = bx - ax;
  const dy = by - ay;
  const length = Math.hypot(dx, dy);
  if (length === 0) return Math.hypot(px - ax, py - ay);
  return Math.abs(dy * px - dx * py + bx * ay - by * ax) / length;
}

/** Douglas–Peucker on a closed ring; a ring that would collapse below a triangle is kept as it was. */
export function simplifyRing(ring: Ring, tolerance: number): Ring {
  const n = ring.length / 2;
  if (tolerance <= 0 || n <= 4) return ring;
  // Split at vertex 0 and the vertex farthest from it, simplify both halves.
  let far = 0;
  let farDistance = -1;
  for (let i = 1; i < n; i++) {
    const dist = Math.hypot(ring[2 * i]! - ring[0]!, ring[2 * i + 1]! - ring[1]!);
    if (dist > farDistance) {
      farDistance = dist;
      far = i;
    }
  }
  const keep = new Uint8Array(n + 1);
  keep[0] = 1;
  keep[far] = 1;
  keep[n] = 1;
  const point = (i: number): [number, number] => [ring[2 * (i % n)]!, ring[2 * (i % n) + 1]!];
  const stack: [number, number][] = [
    [0, far],
    [far, n],
  ];
  while (stack.length > 0) {
    const [a, b] = stack.pop()!;
    const [ax, ay] = point(a);
    const [bx, by] = point(b);
    let index = -1;
    let max = tolerance;
    for (let i = a + 1; i < b; i++) {
      const [px, py] = point(i);
      const dist = perpendicularDistance(px, py, ax, ay, bx, by);
      if (dist > max) {
        max = dist;
        index = i;
      }
    }
    if (index >= 0) {
      keep[index] = 1;
      stack.push([a, index], [index, b]);
    }
  }
  const out: Ring = [];
  for (let i = 0; i < n; i++) if (keep[i]) out.push(ring[2 * i]!, ring[2 * i + 1]!);
  return out.length >= 6 && Math.abs(ringArea(out)) > 0 ? out : ring;
}

export type Position = [number, number];

/** GeoJSON rings (closed, first point repeated) in map or pixel coordinates, oriented by RFC 7946's right-hand rule. */
export function toGeoJsonRings(polygon: PixelPolygon, transform: GeoTransform | null): Position[][] {
  const convert = (ring: Ring, exterior: boolean): Position[] => {
    const points: Position[] = [];
    for (let i = 0; i < ring.length; i += 2) {
      points.push(transform ? pixelToMap(transform, ring[i]!, ring[i + 1]!) : [ring[i]!, ring[i + 1]!]);
    }
    // Exterior counter-clockwise, holes clockwise, in the output's own axes (x right, y up for map coordinates;
    // pixel coordinates keep y down, where the same rule reads as the traced orientation).
    let sum = 0;
    for (let i = 0; i < points.length; i++) {
      const [x1, y1] = points[i]!;
      const [x2, y2] = points[(i + 1) % points.length]!;
      sum += x1 * y2 - x2 * y1;
    }
    const ccw = transform ? sum > 0 : sum < 0;
    if (ccw !== exterior) points.reverse();
    points.push([points[0]![0], points[0]![1]]);
    return points;
  };
  return [convert(polygon.outer, true), ...polygon.holes.map((h) => convert(h, false))];
}

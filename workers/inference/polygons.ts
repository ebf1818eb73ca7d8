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
/** A finished ring, stored compactly (scenes of tens of millions of vertices). */
export type CompactRing = Int32Array;

export interface PixelPolygon {
  outer: CompactRing;
  holes: CompactRing[];
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

export interface TraceSummary {
  /** Polygons produced (regions of at least the minimum size). */
  regions: number;
  /** All 4-connected changed regions, before the minimum-size filter. */
  regionsBeforeFilter: number;
  truncated: boolean;
}

export interface TraceResult extends TraceSummary {
  polygons: PixelPolygon[];
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

function ringArea(ring: ArrayLike<number>): number {
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

/**
 * The 4-connected components of the mask, as runs of changed pixels per row joined by union-find: memory grows with
 * the number of runs, not of pixels. `componentAt` finds the component of a changed pixel, `pixels` its size.
 */
class Components {
  /** Per row, the index of its first run in the run arrays (row y: rowStart[y] … rowStart[y + 1] − 1). */
  private readonly rowStart: Int32Array;
  // Columns fit in 16 bits (images are at most 65 536 wide; `lengths` holds end − start − 1): 8 bytes a run.
  private starts: Uint16Array = new Uint16Array(1024);
  private lengths: Uint16Array = new Uint16Array(1024);
  private parent: Int32Array = new Int32Array(1024);
  private runs = 0;

  constructor(mask: BitMask) {
    const { width: W, height: H, bits } = mask;
    this.rowStart = new Int32Array(H + 1);
    for (let y = 0; y < H; y++) {
      this.rowStart[y] = this.runs;
      let x = 0;
      const base = y * W;
      while (x < W) {
        const i = base + x;
        // Whole empty bytes at once.
        if ((i & 7) === 0 && x + 8 <= W && bits[i >> 3] === 0) {
          x += 8;
          continue;
        }
        if ((bits[i >> 3]! & (1 << (i & 7))) === 0) {
          x += 1;
          continue;
        }
        const start = x;
        while (x < W && (bits[(base + x) >> 3]! & (1 << ((base + x) & 7))) !== 0) x += 1;
        this.addRun(start, x);
      }
      // Join with the overlapping runs of the row above (4-connectivity: the x ranges must overlap).
      if (y > 0) {
        let a = this.rowStart[y - 1]!;
        const aEnd = this.rowStart[y]!;
        for (let b = this.rowStart[y]!; b < this.runs; b++) {
          while (a < aEnd && this.end(a) <= this.starts[b]!) a += 1;
          const bEnd = this.end(b);
          for (let k = a; k < aEnd && this.starts[k]! < bEnd; k++) this.union(k, b);
        }
      }
    }
    this.rowStart[H] = this.runs;
  }

  private addRun(start: number, end: number): void {
    if (this.runs === this.starts.length) {
      // Grown by half: less slack than doubling on scenes with millions of runs.
      const capacity = Math.ceil(this.starts.length * 1.5);
      const grow = <T extends Uint16Array | Int32Array>(a: T, make: (n: number) => T): T => {
        const b = make(capacity);
        b.set(a);
        return b;
      };
      this.starts = grow(this.starts, (n) => new Uint16Array(n));
      this.lengths = grow(this.lengths, (n) => new Uint16Array(n));
      this.parent = grow(this.parent, (n) => new Int32Array(n));
    }
    this.starts[this.runs] = start;
    this.lengths[this.runs] = end - start - 1;
    this.parent[this.runs] = this.runs;
    this.runs += 1;
  }

  private end(run: number): number {
    return this.starts[run]! + this.lengths[run]! + 1;
  }

  private find(i: number): number {
    let root = i;
    while (this.parent[root] !== root) root = this.parent[root]!;
    while (this.parent[i] !== root) {
      const next = this.parent[i]!;
      this.parent[i] = root;
      i = next;
    }
    return root;
  }

  private union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.parent[Math.max(ra, rb)] = Math.min(ra, rb);
  }

  /** The component (root run) of changed pixel (x, y). */
  componentAt(x: number, y: number): number {
    let lo = this.rowStart[y]!;
    let hi = this.rowStart[y + 1]! - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.end(mid) <= x) lo = mid + 1;
      else if (this.starts[mid]! > x) hi = mid - 1;
      else return this.find(mid);
    }
    throw new Error(`pixel ${x},${y} is not changed`);
  }
}

/**
 * Traces every boundary ring of the mask and yields each region's polygon as soon as it is complete, top to bottom:
 * only the regions crossing the row being scanned are held, so polygons stream out of scenes of any size. Outer rings
 * have positive shoelace area (clockwise on screen), holes negative. Each ring starts at the top edge of a changed
 * pixel; that pixel's 4-connected component is the region the ring bounds — from outside for an outer ring, from
 * inside a hole for a hole — so holes find their region without any point-in-polygon search, in time linear in the
 * mask and its boundaries. A region is complete once the scan passes its last row (its holes start above it).
 */
export function* tracePolygons(mask: BitMask, options: TraceOptions): Generator<PixelPolygon, TraceSummary> {
  const { width: W, height: H } = mask;
  const components = new Components(mask);
  // One visited bit per horizontal pixel edge ((H+1)×W): rings are only ever started from horizontal edges.
  const hVisited = new Uint8Array(Math.ceil(((H + 1) * W) / 8));
  const visit = (vx: number, vy: number, d: number): void => {
    if (d !== 0 && d !== 2) return;
    const i = vy * W + (d === 0 ? vx : vx - 1);
    hVisited[i >> 3]! |= 1 << (i & 7);
  };
  const hSeen = (x: number, y: number): boolean => {
    const i = y * W + x;
    return (hVisited[i >> 3]! & (1 << (i & 7))) !== 0;
  };

  interface Open {
    outer: CompactRing;
    bbox: [number, number, number, number];
    area: number;
    holes: CompactRing[];
    holeArea: number;
  }
  const open = new Map<number, Open>();
  /** Components whose last row is y − 1, by y: complete when the scan reaches row y. */
  const closing = new Map<number, number[]>();
  let vertices = 0;
  let truncated = false;
  let regions = 0;
  let regionsBeforeFilter = 0;
  const maxVertices = options.maxVertices ?? Number.POSITIVE_INFINITY;
  const bits = mask.bits;
  const finish = (component: number): PixelPolygon | null => {
    const region = open.get(component);
    if (!region) return null;
    open.delete(component);
    const pixels = Math.round(region.area - region.holeArea);
    if (pixels < options.minRegionPixels) return null;
    regions += 1;
    return {
      outer: Int32Array.from(simplifyRing(Array.from(region.outer), options.simplifyTolerance)),
      holes: region.holes.map((h) => Int32Array.from(simplifyRing(Array.from(h), options.simplifyTolerance))),
      pixels,
      bbox: region.bbox,
    };
  };

  scan: for (let y = 0; y < H; y++) {
    for (const component of closing.get(y) ?? []) {
      const polygon = finish(component);
      if (polygon) yield polygon;
    }
    closing.delete(y);
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      if ((i & 7) === 0 && x + 8 <= W && bits[i >> 3] === 0) {
        x += 7;
        continue;
      }
      // Every ring, outer or hole, has at least one top edge of a changed pixel under an unchanged one.
      if (!mask.get(x, y) || mask.get(x, y - 1) || hSeen(x, y)) continue;
      const ring: Ring = [];
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
      } while (vx !== x || vy !== y || d !== 0);
      vertices += ring.length / 2;
      const component = components.componentAt(x, y);
      const area = ringArea(ring);
      if (area > 0) {
        regionsBeforeFilter += 1;
        const bbox = ringBbox(ring);
        open.set(component, { outer: Int32Array.from(ring), bbox, area, holes: [], holeArea: 0 });
        const list = closing.get(bbox[3]);
        if (list) list.push(component);
        else closing.set(bbox[3], [component]);
      } else {
        const region = open.get(component);
        if (region) {
          region.holes.push(Int32Array.from(ring));
          region.holeArea -= area;
        }
      }
      if (vertices > maxVertices) {
        truncated = true;
        break scan;
      }
    }
  }
  for (const component of [...open.keys()]) {
    const polygon = finish(component);
    if (polygon) yield polygon;
  }
  return { regions, regionsBeforeFilter, truncated };
}

/** Every polygon of the mask at once (small masks and tests; see tracePolygons for streaming). */
export function traceRegions(mask: BitMask, options: TraceOptions): TraceResult {
  const polygons: PixelPolygon[] = [];
  const trace = tracePolygons(mask, options);
  for (;;) {
    const next = trace.next();
    if (next.done) return { ...next.value, polygons };
    polygons.push(next.value);
  }
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
  const convert = (ring: ArrayLike<number>, exterior: boolean): Position[] => {
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

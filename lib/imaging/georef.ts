// Georeferencing of rasters: the coordinate reference system (from GeoTIFF GeoKeys) and the affine pixel → map
// transform, how to compare two of them, map coordinates of pixel corners, and the ground area of pixels.

/** GDAL's geotransform order: x = t[0] + col·t[1] + row·t[2]; y = t[3] + col·t[4] + row·t[5] (pixel corners). */
export type GeoTransform = [number, number, number, number, number, number];

export type CrsKind = 'projected' | 'geographic' | 'geocentric' | 'unknown';

export interface CrsInfo {
  /** EPSG code of the projected or geographic CRS; null when user-defined or not given. */
  epsg: number | null;
  kind: CrsKind;
  /** Metres per linear unit of a projected CRS; null when the unit is unknown (then no area in m²). */
  metresPerUnit: number | null;
  /** Human-readable name from GTCitation / PCSCitation when present. */
  citation: string | null;
}

/**
 * The raw GeoTIFF tags that define the georeference, carried verbatim to outputs so that they keep exactly the
 * input's CRS (including user-defined ones this code does not interpret).
 */
export interface GeoTiffTags {
  geoKeyDirectory: number[];
  geoDoubleParams?: number[];
  geoAsciiParams?: string;
  modelPixelScale?: number[];
  modelTiepoint?: number[];
  modelTransformation?: number[];
}

export interface GeoReference {
  crs: CrsInfo;
  transform: GeoTransform;
  tags: GeoTiffTags;
}

export const GEO_KEYS = {
  GTModelType: 1024,
  GTRasterType: 1025,
  GTCitation: 1026,
  GeographicType: 2048,
  GeogCitation: 2049,
  GeogAngularUnits: 2054,
  ProjectedCSType: 3072,
  PCSCitation: 3073,
  ProjLinearUnits: 3076,
} as const;

const USER_DEFINED = 32767;
/** EPSG linear unit codes → metres. */
const LINEAR_UNITS: Record<number, number> = { 9001: 1, 9002: 0.3048, 9003: 1200 / 3937, 9036: 1000 };

/** Projected EPSG codes known to be in metres when a file omits ProjLinearUnitsGeoKey. */
function isMetricEpsg(code: number): boolean {
  return (
    (code >= 32601 && code <= 32660) || // WGS 84 / UTM north
    (code >= 32701 && code <= 32760) || // WGS 84 / UTM south
    (code >= 25828 && code <= 25838) || // ETRS89 / UTM
    (code >= 26901 && code <= 26923) || // NAD83 / UTM
    (code >= 31466 && code <= 31469) || // DHDN / Gauss-Kruger
    [3857, 3395, 3035, 3034, 2154, 27700, 28992, 3067, 3006, 2056, 21781, 5514, 3413, 3031, 6933, 8857, 54009].includes(code)
  );
}

/** Interprets a parsed GeoKey directory (key id → value). */
export function crsFromGeoKeys(keys: Map<number, number | string | number[]>): CrsInfo {
  const num = (id: number): number | null => {
    const v = keys.get(id);
    return typeof v === 'number' ? v : null;
  };
  const str = (id: number): string | null => {
    const v = keys.get(id);
    return typeof v === 'string' ? v.replace(/\|$/, '') : null;
  };
  const model = num(GEO_KEYS.GTModelType);
  const projected = num(GEO_KEYS.ProjectedCSType);
  const geographic = num(GEO_KEYS.GeographicType);
  let kind: CrsKind = 'unknown';
  if (model === 1 || (model === null && projected !== null)) kind = 'projected';
  else if (model === 2 || (model === null && geographic !== null)) kind = 'geographic';
  else if (model === 3) kind = 'geocentric';
  const code = kind === 'projected' ? projected : kind === 'geographic' ? geographic : null;
  const epsg = code !== null && code !== USER_DEFINED && code > 0 ? code : null;
  let metresPerUnit: number | null = null;
  if (kind === 'projected') {
    const unit = num(GEO_KEYS.ProjLinearUnits);
    if (unit !== null && unit !== USER_DEFINED) metresPerUnit = LINEAR_UNITS[unit] ?? null;
    else if (unit === null && epsg !== null && isMetricEpsg(epsg)) metresPerUnit = 1;
  }
  return { epsg, kind, metresPerUnit, citation: str(GEO_KEYS.PCSCitation) ?? str(GEO_KEYS.GTCitation) ?? str(GEO_KEYS.GeogCitation) };
}

/** Parses GeoKeyDirectoryTag (with its double and ASCII parameter tags) into key id → value. */
export function parseGeoKeyDirectory(tags: GeoTiffTags): Map<number, number | string | number[]> {
  const dir = tags.geoKeyDirectory;
  const keys = new Map<number, number | string | number[]>();
  if (dir.length < 4) return keys;
  const count = dir[3]!;
  for (let i = 0; i < count; i++) {
    const base = 4 + i * 4;
    if (base + 3 >= dir.length) break;
    const [id, location, n, offset] = [dir[base]!, dir[base + 1]!, dir[base + 2]!, dir[base + 3]!];
    if (location === 0) keys.set(id, offset);
    else if (location === 34736 && tags.geoDoubleParams) {
      const values = tags.geoDoubleParams.slice(offset, offset + n);
      keys.set(id, n === 1 ? values[0]! : values);
    } else if (location === 34737 && tags.geoAsciiParams) keys.set(id, tags.geoAsciiParams.slice(offset, offset + n));
    else if (location === 34735) keys.set(id, dir.slice(offset, offset + n));
  }
  return keys;
}

/**
 * The pixel-corner geotransform from ModelTransformation, or ModelTiepoint + ModelPixelScale. PixelIsPoint rasters
 * (GTRasterTypeGeoKey = 2) are shifted by half a pixel, as GDAL does, so that the transform always maps corners.
 * Null when the tags do not georeference the raster.
 */
export function transformFromTags(tags: GeoTiffTags, keys: Map<number, number | string | number[]>): GeoTransform | null {
  let t: GeoTransform | null = null;
  const m = tags.modelTransformation;
  if (m && m.length >= 16) {
    t = [m[3]!, m[0]!, m[1]!, m[7]!, m[4]!, m[5]!];
  } else if (tags.modelTiepoint && tags.modelTiepoint.length >= 6 && tags.modelPixelScale && tags.modelPixelScale.length >= 2) {
    const [i, j, , x, y] = tags.modelTiepoint as [number, number, number, number, number];
    const [sx, sy] = tags.modelPixelScale as [number, number];
    t = [x - i * sx, sx, 0, y + j * sy, 0, -sy];
  }
  if (!t || !t.every(Number.isFinite) || t[1] * t[5] - t[2] * t[4] === 0) return null;
  if (keys.get(GEO_KEYS.GTRasterType) === 2) {
    t = [t[0] - 0.5 * t[1] - 0.5 * t[2], t[1], t[2], t[3] - 0.5 * t[4] - 0.5 * t[5], t[4], t[5]];
  }
  return t;
}

export function readGeoReference(tags: GeoTiffTags | null): GeoReference | null {
  if (!tags || tags.geoKeyDirectory.length < 4) return null;
  const keys = parseGeoKeyDirectory(tags);
  const transform = transformFromTags(tags, keys);
  if (!transform) return null;
  return { crs: crsFromGeoKeys(keys), transform, tags };
}

/** Map coordinates of a pixel-grid point (column, row), corners at integers. */
export function pixelToMap(t: GeoTransform, col: number, row: number): [number, number] {
  return [t[0] + col * t[1] + row * t[2], t[3] + col * t[4] + row * t[5]];
}

/** Why two georeferences differ, or null when they describe the same grid in the same CRS. */
export function compareGeoReferences(a: GeoReference, b: GeoReference): { problem: 'CRS_MISMATCH' | 'TRANSFORM_MISMATCH'; detail: string } | null {
  const sameCrs =
    a.crs.kind === b.crs.kind &&
    a.crs.epsg === b.crs.epsg &&
    (a.crs.epsg !== null || sameNumbers(a.tags.geoKeyDirectory, b.tags.geoKeyDirectory));
  if (!sameCrs) return { problem: 'CRS_MISMATCH', detail: `${describeCrs(a.crs)} vs ${describeCrs(b.crs)}` };
  const pixel = Math.max(Math.hypot(a.transform[1], a.transform[4]), Math.hypot(a.transform[2], a.transform[5]));
  // Origins may differ by float noise; more than a thousandth of a pixel is a different grid.
  const tolerance = pixel * 1e-3;
  const diffs = a.transform.map((v, i) => Math.abs(v - b.transform[i]!));
  if (diffs.some((d) => d > tolerance)) {
    return { problem: 'TRANSFORM_MISMATCH', detail: `geotransform [${a.transform.join(', ')}] vs [${b.transform.join(', ')}]` };
  }
  return null;
}

function sameNumbers(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export function describeCrs(crs: CrsInfo): string {
  if (crs.epsg !== null) return `EPSG:${crs.epsg}`;
  return crs.citation ? `${crs.kind} CRS "${crs.citation}"` : `${crs.kind} CRS (user-defined)`;
}

/** `urn:ogc:def:crs:EPSG::<code>` for GeoJSON's (pre-RFC 7946) `crs` member; null when the CRS has no EPSG code. */
export function crsUrn(crs: CrsInfo): string | null {
  return crs.epsg !== null ? `urn:ogc:def:crs:EPSG::${crs.epsg}` : null;
}

/** Mean Earth radius (IUGG authalic sphere), for areas in geographic CRSs. */
const EARTH_RADIUS_M = 6_371_007.2;

/**
 * Ground area of changed pixels. Projected CRS with a known linear unit: pixel count × |det| of the transform, in m².
 * Geographic CRS (degrees): per row on the authalic sphere (R²·Δλ·|sin φ₁ − sin φ₂|), which is exact for a sphere and
 * within about 0.5 % of the ellipsoid; needs a north-up grid. Null when neither applies (unknown units, rotation in a
 * geographic CRS).
 */
export function changedAreaSquareMeters(geo: GeoReference, changedPerRow: ArrayLike<number>): number | null {
  const t = geo.transform;
  if (geo.crs.kind === 'projected' && geo.crs.metresPerUnit !== null) {
    let pixels = 0;
    for (let i = 0; i < changedPerRow.length; i++) pixels += changedPerRow[i]!;
    const unitArea = Math.abs(t[1] * t[5] - t[2] * t[4]) * geo.crs.metresPerUnit ** 2;
    return pixels * unitArea;
  }
  if (geo.crs.kind === 'geographic' && t[2] === 0 && t[4] === 0) {
    const dLambda = (Math.abs(t[1]) * Math.PI) / 180;
    let area = 0;
    for (let row = 0; row < changedPerRow.length; row++) {
      const count = changedPerRow[row]!;
      if (count === 0) continue;
      const phi1 = ((t[3] + row * t[5]) * Math.PI) / 180;
      const phi2 = ((t[3] + (row + 1) * t[5]) * Math.PI) / 180;
      area += count * EARTH_RADIUS_M ** 2 * dLambda * Math.abs(Math.sin(phi1) - Math.sin(phi2));
    }
    return area;
  }
  return null;
}

/** Builds the GeoTIFF tags of a north-up grid in an EPSG CRS (for tests and tools that make GeoTIFFs from scratch). */
export function geoTiffTagsForEpsg(epsg: number, kind: 'projected' | 'geographic', transform: GeoTransform): GeoTiffTags {
  const keys: [number, number][] =
    kind === 'projected'
      ? [
          [GEO_KEYS.GTModelType, 1],
          [GEO_KEYS.GTRasterType, 1],
          [GEO_KEYS.ProjectedCSType, epsg],
          [GEO_KEYS.ProjLinearUnits, 9001],
        ]
      : [
          [GEO_KEYS.GTModelType, 2],
          [GEO_KEYS.GTRasterType, 1],
          [GEO_KEYS.GeographicType, epsg],
          [GEO_KEYS.GeogAngularUnits, 9102],
        ];
  const geoKeyDirectory = [1, 1, 0, keys.length, ...keys.flatMap(([id, value]) => [id, 0, 1, value])];
  const north = transform[2] === 0 && transform[4] === 0;
  return north
    ? { geoKeyDirectory, modelPixelScale: [transform[1], -transform[5], 0], modelTiepoint: [0, 0, 0, transform[0], transform[3], 0] }
    : {
        geoKeyDirectory,
        modelTransformation: [transform[1], transform[2], 0, transform[0], transform[4], transform[5], 0, transform[3], 0, 0, 0, 0, 0, 0, 0, 1],
      };
}

// Materialises a dataset version from object storage into a local cache the trainer reads: every file once by its
// sha256 (`objects/<sha256>`, shared by all versions), and per version a manifest in the trainer's format
// (`versions/<versionId>/manifest.json`). Everything is checked against its hash, written under a temporary name and
// renamed into place, so a cache entry is either complete or absent and can be shared by concurrent runs.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { ObjectNotFoundError, type ObjectStore } from '../../lib/storage/index.js';

/** The datasets subgraph's manifest (DatasetService.recordVersion): its sha256 is the version id. */
const storedFileSchema = z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.number().int().nonnegative(), key: z.string().min(1) });
export const datasetManifestSchema = z.object({
  datasetId: z.string(),
  items: z.array(
    z.object({
      before: storedFileSchema,
      after: storedFileSchema,
      label: storedFileSchema.nullable(),
      width: z.number().int(),
      height: z.number().int(),
      bands: z.number().int(),
    }),
  ),
});
export type DatasetManifest = z.infer<typeof datasetManifestSchema>;

/** A problem with the dataset version itself (not with storage being down): the run fails, it is not retried. */
export class DatasetUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetUnavailableError';
  }
}

export interface MaterialisedDataset {
  manifestPath: string;
  items: number;
  /** True when the version was already in the cache. */
  reused: boolean;
  /** Files downloaded now (0 when everything was cached). */
  downloaded: number;
}

const sha256Hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

export class DatasetCache {
  private readonly inFlight = new Map<string, Promise<MaterialisedDataset>>();

  constructor(
    private readonly store: ObjectStore,
    readonly root: string,
  ) {}

  /** The trainer's manifest of `versionId`, downloading what the cache lacks. Concurrent calls share one download. */
  materialise(versionId: string, manifestKey: string): Promise<MaterialisedDataset> {
    let pending = this.inFlight.get(versionId);
    if (!pending) {
      pending = this.load(versionId, manifestKey).finally(() => this.inFlight.delete(versionId));
      this.inFlight.set(versionId, pending);
    }
    return pending;
  }

  private async load(versionId: string, manifestKey: string): Promise<MaterialisedDataset> {
    if (!/^[0-9a-f]{64}$/.test(versionId)) throw new DatasetUnavailableError(`dataset version id ${JSON.stringify(versionId)} is not a sha256`);
    const versionDir = join(this.root, 'versions', versionId);
    const manifestPath = join(versionDir, 'manifest.json');
    const existing = await stat(manifestPath).catch(() => null);
    if (existing) {
      const items = (JSON.parse(await readFile(manifestPath, 'utf8')) as { items: unknown[] }).items.length;
      return { manifestPath, items, reused: true, downloaded: 0 };
    }

    let manifestBytes: Buffer;
    try {
      manifestBytes = await this.store.get(manifestKey);
    } catch (error) {
      if (error instanceof ObjectNotFoundError) throw new DatasetUnavailableError(`the manifest of dataset version ${versionId} is missing from object storage (${manifestKey})`);
      throw error;
    }
    // The version id is the manifest's sha256: a manifest that does not hash to it was changed or swapped.
    if (sha256Hex(manifestBytes) !== versionId) throw new DatasetUnavailableError(`the manifest at ${manifestKey} does not match dataset version ${versionId} (sha256 differs)`);
    let manifest: DatasetManifest;
    try {
      manifest = datasetManifestSchema.parse(JSON.parse(manifestBytes.toString('utf8')));
    } catch (error) {
      throw new DatasetUnavailableError(`the manifest of dataset version ${versionId} cannot be read: ${(error as Error).message.slice(0, 500)}`);
    }

    const objectsDir = join(this.root, 'objects');
    await mkdir(objectsDir, { recursive: true });
    const files = new Map<string, z.infer<typeof storedFileSchema>>();
    for (const item of manifest.items) for (const f of [item.before, item.after, item.label]) if (f) files.set(f.sha256, f);
    let downloaded = 0;
    for (const file of files.values()) {
      if (await this.fetchObject(objectsDir, file)) downloaded += 1;
    }

    // Paths are relative to the manifest's folder (versions/<id>/), so the cache can move as a whole.
    const rel = (sha: string) => `../../objects/${sha}`;
    const trainerManifest = {
      datasetVersion: versionId,
      datasetId: manifest.datasetId,
      items: manifest.items.map((item) => ({ before: rel(item.before.sha256), after: rel(item.after.sha256), label: item.label ? rel(item.label.sha256) : null })),
    };
    await mkdir(versionDir, { recursive: true });
    const tmp = `${manifestPath}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify(trainerManifest, null, 1));
    await rename(tmp, manifestPath);
    return { manifestPath, items: manifest.items.length, reused: false, downloaded };
  }

  /** Downloads one content-addressed object unless the cache has it; true when it was downloaded. */
  private async fetchObject(objectsDir: string, file: z.infer<typeof storedFileSchema>): Promise<boolean> {
    const target = join(objectsDir, file.sha256);
    const have = await stat(target).catch(() => null);
    if (have && have.size === file.size) return false;
    const tmp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      let body: NodeJS.ReadableStream;
      try {
        body = await this.store.getStream(file.key);
      } catch (error) {
        if (error instanceof ObjectNotFoundError) throw new DatasetUnavailableError(`dataset file ${file.key} is missing from object storage`);
        throw error;
      }
      await pipeline(body, createWriteStream(tmp));
      const got = await fileSha256(tmp);
      if (got !== file.sha256) throw new DatasetUnavailableError(`dataset file ${file.key} does not match its sha256 (expected ${file.sha256}, got ${got})`);
      await rename(tmp, target);
      return true;
    } finally {
      await rm(tmp, { force: true });
    }
  }
}

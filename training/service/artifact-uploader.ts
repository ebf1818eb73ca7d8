// Uploads a run's files to object storage under `training/<tenant>/<runId>/`: checkpoint, evaluation, drift reference
// statistics, parity tensors, the trainer's log and config. A registered ONNX file goes to its content-addressed model
// key instead. Failed and cancelled runs upload whatever they produced, so they can be inspected.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ObjectStore } from '../../lib/storage/index.js';
import { runArtifactKey } from '../../subgraphs/models/training.contracts.js';

export interface UploadedArtifact {
  name: string;
  key: string;
  byteSize: number;
  sha256: string;
}

const CONTENT_TYPES: Record<string, string> = { '.json': 'application/json', '.log': 'text/plain; charset=utf-8', '.onnx': 'application/octet-stream' };

function contentType(name: string): string {
  const dot = name.lastIndexOf('.');
  return (dot >= 0 && CONTENT_TYPES[name.slice(dot)]) || 'application/octet-stream';
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

async function* filesUnder(dir: string): AsyncGenerator<string> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) yield* filesUnder(full);
    else if (entry.isFile() && !entry.name.endsWith('.tmp')) yield full;
  }
}

export class ArtifactUploader {
  constructor(private readonly store: ObjectStore) {}

  /** Uploads one file; `key` defaults to the run's artifact key for `name`. */
  async upload(tenant: string, runId: string, name: string, path: string, key?: string): Promise<UploadedArtifact> {
    const info = await stat(path);
    const sha256 = await fileSha256(path);
    const target = key ?? runArtifactKey(tenant, runId, name);
    // Content-addressed keys already holding the bytes are not written twice.
    const existing = key ? await this.store.head(target) : null;
    if (!existing || existing.size !== info.size) await this.store.put(target, createReadStream(path), { contentType: contentType(name) });
    return { name, key: target, byteSize: info.size, sha256 };
  }

  /**
   * Uploads every file under `outDir` (names relative to it, e.g. `parity/index.json`) plus the extra files given;
   * `keys` overrides the key of some names (the registered model.onnx).
   */
  async uploadRun(
    tenant: string,
    runId: string,
    outDir: string,
    extra: { name: string; path: string }[],
    keys: Record<string, string> = {},
  ): Promise<UploadedArtifact[]> {
    const uploaded: UploadedArtifact[] = [];
    for await (const path of filesUnder(outDir)) {
      const name = relative(outDir, path).split(sep).join('/');
      uploaded.push(await this.upload(tenant, runId, name, path, keys[name]));
    }
    for (const file of extra) {
      if (await stat(file.path).catch(() => null)) uploaded.push(await this.upload(tenant, runId, file.name, file.path, keys[file.name]));
    }
    return uploaded;
  }
}

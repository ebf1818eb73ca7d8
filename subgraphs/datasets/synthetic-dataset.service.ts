// Makes dataset versions from the project's synthetic generator (training/lcd_training/synthetic.py): the generated
// pairs are stored content-addressed exactly like uploaded ones and the version records the generator's parameters,
// so the same name, pairs, size and seed give the same version.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { UniqueConstraintViolationException, type EntityManager } from '@mikro-orm/core';
import type { Logger } from 'pino';
import { z } from 'zod';
import { GraphQLError } from 'graphql';
import { badInput, isApiError } from '../../lib/errors.js';
import { decodeImage } from '../../lib/imaging/decode.js';
import { findTrainingDir, pythonEnv, resolveGeneratorPython } from '../../training/service/python-runtime.js';
import type { DatasetRepository } from './dataset.repository.js';
import type { Actor, DatasetService, PreparedItem } from './dataset.service.js';
import type { DatasetVersionEntity } from './dataset-version.entity.js';

const run = promisify(execFile);

export interface SyntheticDatasetOptions {
  /** LCD_PYTHON; default /usr/bin/python3 when it has numpy and PIL, else python3. */
  python?: string;
  maxPairs: number;
  /** Bound on pairs × size² (the generator's work and the version's size). */
  maxPixels: number;
  timeoutMs: number;
  /** The environment the generator inherits (default: this process's). */
  baseEnv?: NodeJS.ProcessEnv;
  log?: Logger;
}

export interface SyntheticDatasetInput {
  name: string;
  pairs: number;
  size: number;
  seed: number;
}

export const MIN_SYNTHETIC_SIZE = 32;
export const MAX_SYNTHETIC_SIZE = 2048;

const generatorManifestSchema = z.object({
  datasetVersion: z.string(),
  generators: z.array(z.record(z.string(), z.unknown())).optional(),
  items: z.array(z.object({ before: z.string(), after: z.string(), label: z.string() })),
});

export class SyntheticDatasetService {
  constructor(
    private readonly repository: DatasetRepository,
    private readonly datasets: DatasetService,
    private readonly options: SyntheticDatasetOptions,
  ) {}

  async createVersion(em: EntityManager, actor: Actor, input: SyntheticDatasetInput): Promise<DatasetVersionEntity> {
    const { pairs, size, seed } = input;
    if (!Number.isInteger(pairs) || pairs < 1 || pairs > this.options.maxPairs) throw badInput(`pairs must be an integer from 1 to ${this.options.maxPairs}`, 'pairs');
    if (!Number.isInteger(size) || size < MIN_SYNTHETIC_SIZE || size > MAX_SYNTHETIC_SIZE) {
      throw badInput(`size must be an integer from ${MIN_SYNTHETIC_SIZE} to ${MAX_SYNTHETIC_SIZE} (pixels per side)`, 'size');
    }
    if (!Number.isInteger(seed) || seed < 0) throw badInput('seed must be a non-negative integer', 'seed');
    if (pairs * size * size > this.options.maxPixels) {
      throw badInput(`pairs × size² may be at most ${this.options.maxPixels} pixels (asked for ${pairs * size * size})`, 'pairs');
    }
    const dataset = await this.findOrCreateDataset(em, actor, input.name, `Synthetic pairs from lcd_training.synthetic`);
    const dir = await mkdtemp(join(tmpdir(), 'lcd-synthetic-'));
    try {
      const manifest = await this.generate(dir, input);
      const prepared: PreparedItem[] = [];
      for (const item of manifest.items) prepared.push(await this.prepare(dir, actor.tenant, item));
      const generator = manifest.generators?.at(-1) ?? {};
      const synthetic = { ...generator, generatorDatasetVersion: manifest.datasetVersion, pairs, size, seed };
      return await this.datasets.recordVersion(em, actor, dataset, prepared, synthetic);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private async findOrCreateDataset(em: EntityManager, actor: Actor, name: string, description: string) {
    const existing = await this.repository.findDatasetByName(em, actor.tenant, name.trim());
    if (existing) return existing;
    try {
      return await this.datasets.createDataset(em, actor, { name, description });
    } catch (error) {
      // Created by a concurrent request with the same name.
      const conflict = error instanceof UniqueConstraintViolationException || (isApiError(error) && error.extensions.code === 'CONFLICT');
      const again = conflict ? await this.repository.findDatasetByName(em.fork(), actor.tenant, name.trim()) : null;
      if (again) return again;
      throw error;
    }
  }

  private async generate(dir: string, input: SyntheticDatasetInput) {
    const trainingDir = findTrainingDir();
    const python = await resolveGeneratorPython(this.options.python);
    const args = ['-m', 'lcd_training.synthetic', '--out', dir, '--pairs', String(input.pairs), '--size', String(input.size), '--seed', String(input.seed)];
    try {
      await run(python, args, { cwd: trainingDir, env: pythonEnv(trainingDir, {}, this.options.baseEnv), timeout: this.options.timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    } catch (error) {
      const e = error as NodeJS.ErrnoException & { stderr?: string; killed?: boolean };
      const why = e.code === 'ENOENT' ? `${python} was not found (set LCD_PYTHON)` : e.killed ? `it took longer than ${this.options.timeoutMs} ms` : (e.stderr ?? e.message).trim().split('\n').at(-1);
      this.options.log?.error({ err: error, python }, 'synthetic generator failed');
      throw new GraphQLError(`The synthetic generator failed: ${why}`, { extensions: { code: 'UNAVAILABLE' } });
    }
    return generatorManifestSchema.parse(JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')));
  }

  private async prepare(dir: string, tenant: string, item: { before: string; after: string; label: string }): Promise<PreparedItem> {
    const [before, after, label] = await Promise.all([item.before, item.after, item.label].map((p) => readFile(join(dir, p))));
    const image = decodeImage(before!);
    return {
      before: await this.datasets.storeContent(tenant, before!, 'image/png'),
      after: await this.datasets.storeContent(tenant, after!, 'image/png'),
      label: await this.datasets.storeContent(tenant, label!, 'image/png'),
      width: image.width,
      height: image.height,
      bands: image.bands,
      format: image.header.format,
    };
  }
}

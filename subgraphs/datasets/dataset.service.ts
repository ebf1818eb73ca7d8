// Owns datasets, their immutable content-addressed versions and the uploads that feed them.
import { createHash } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/core';
import { badInput, conflict, notFound } from '../../lib/errors.js';
import { isSha256, isUuid } from '../../lib/ids.js';
import { appendEvents } from '../../lib/events/event-log.js';
import { decodeImage, isBinaryMask, type RasterImage } from '../../lib/imaging/decode.js';
import { ImageDecodeError } from '../../lib/imaging/probe.js';
import type { ObjectStore } from '../../lib/storage/object-store.js';
import { DatasetEntity } from './dataset.entity.js';
import { DatasetItemEntity } from './dataset-item.entity.js';
import { DatasetVersionEntity } from './dataset-version.entity.js';
import { datasetVersionCreatedEvent, PREVIOUS_VERSIONS_IN_EVENT } from './dataset-events.js';
import { DatasetRepository, type UploadObject } from './dataset.repository.js';
import type { CreateDatasetInput, CreateUploadInput, DatasetItemInput } from './dataset.inputs.js';
import { UploadEntity } from './upload.entity.js';
import { UploadStatus } from './upload.type.js';

export interface DatasetServiceOptions {
  maxUploadBytes: number;
  uploadUrlTtlSeconds: number;
  maxItemsPerVersion: number;
  imageLimits: { maxPixels: number; maxSide: number };
  /** The event relay, kicked after a version's `dataset.version.created` event is committed. */
  events?: { kick(): void };
}

export const UPLOAD_CONTENT_TYPES = ['image/png', 'image/jpeg', 'image/tiff', 'application/octet-stream', 'application/onnx'] as const;

export interface Actor {
  tenant: string;
  subject: string;
}

export interface StoredFile {
  key: string;
  sha256: string;
  size: number;
}

export interface PreparedItem {
  before: StoredFile;
  after: StoredFile;
  label: StoredFile | null;
  width: number;
  height: number;
  bands: number;
  format: string;
}

export interface ManifestItem {
  before: { sha256: string; size: number; key: string };
  after: { sha256: string; size: number; key: string };
  label: { sha256: string; size: number; key: string } | null;
  width: number;
  height: number;
  bands: number;
}

export interface DatasetManifest {
  datasetId: string;
  items: ManifestItem[];
}

// eslint-disable-next-line no-control-regex -- control characters are exactly what a file name must not hold
const FILENAME = /^[^/\\\u0000-\u001f]{1,255}$/;

export class DatasetService {
  constructor(
    private readonly repository: DatasetRepository,
    private readonly store: ObjectStore,
    private readonly options: DatasetServiceOptions,
  ) {}

  async createUpload(em: EntityManager, actor: Actor, input: CreateUploadInput) {
    if (!FILENAME.test(input.filename)) throw badInput('filename must be 1–255 characters without slashes or control characters', 'filename');
    if (!(UPLOAD_CONTENT_TYPES as readonly string[]).includes(input.contentType)) {
      throw badInput(`contentType must be one of ${UPLOAD_CONTENT_TYPES.join(', ')}`, 'contentType');
    }
    if (!Number.isInteger(input.byteSize) || input.byteSize < 1 || input.byteSize > this.options.maxUploadBytes) {
      throw badInput(`byteSize must be between 1 and ${this.options.maxUploadBytes}`, 'byteSize');
    }
    const upload = em.create(UploadEntity, {
      tenant: actor.tenant,
      createdBy: actor.subject,
      filename: input.filename,
      contentType: input.contentType,
      byteSize: input.byteSize,
      objectKey: '',
      expiresAt: new Date(Date.now() + this.options.uploadUrlTtlSeconds * 1000),
    });
    upload.objectKey = `uploads/${actor.tenant}/${upload.id}`;
    const signed = await this.store.presignPut(upload.objectKey, {
      contentType: input.contentType,
      byteSize: input.byteSize,
      expiresInSeconds: this.options.uploadUrlTtlSeconds,
    });
    upload.expiresAt = signed.expiresAt;
    await em.persistAndFlush(upload);
    return { upload, signed };
  }

  async getUpload(em: EntityManager, actor: Actor, id: string) {
    const upload = isUuid(id) ? await this.repository.findUpload(em, actor.tenant, id) : null;
    if (!upload) throw notFound('Upload', id);
    return upload;
  }

  async uploadStatus(upload: UploadEntity): Promise<UploadStatus> {
    const head = await this.store.head(upload.objectKey);
    if (head && head.size === upload.byteSize) return UploadStatus.UPLOADED;
    return upload.expiresAt.getTime() < Date.now() ? UploadStatus.EXPIRED : UploadStatus.PENDING;
  }

  async createDataset(em: EntityManager, actor: Actor, input: CreateDatasetInput) {
    const name = input.name.trim();
    if (!/^[\p{L}\p{N}][\p{L}\p{N} ._-]{0,99}$/u.test(name)) {
      throw badInput('name must be 1–100 letters, digits, spaces, dots, dashes or underscores', 'name');
    }
    if ((input.description ?? '').length > 2000) throw badInput('description must be at most 2000 characters', 'description');
    if (await this.repository.findDatasetByName(em, actor.tenant, name)) {
      throw conflict(`A dataset named ${JSON.stringify(name)} already exists`, { field: 'name' });
    }
    const dataset = em.create(DatasetEntity, { tenant: actor.tenant, name, description: input.description ?? '', createdBy: actor.subject });
    await em.persistAndFlush(dataset);
    return dataset;
  }

  async getDataset(em: EntityManager, actor: Actor, id: string) {
    const dataset = isUuid(id) ? await this.repository.findDataset(em, actor.tenant, id) : null;
    if (!dataset) throw notFound('Dataset', id);
    return dataset;
  }

  async getVersion(em: EntityManager, actor: Actor, id: string) {
    const version = isSha256(id) ? await this.repository.findVersion(em, actor.tenant, id) : null;
    if (!version) throw notFound('DatasetVersion', id);
    return version;
  }

  /**
   * Validates every pair (decodes, sizes match, labels binary), copies the files to content-addressed keys, writes
   * the manifest, then records the version and its items in one transaction. The same items give the same version.
   */
  async createVersion(em: EntityManager, actor: Actor, datasetId: string, items: DatasetItemInput[]) {
    const dataset = await this.getDataset(em, actor, datasetId);
    if (items.length === 0) throw badInput('A dataset version needs at least one item', 'items');
    if (items.length > this.options.maxItemsPerVersion) {
      throw badInput(`A dataset version holds at most ${this.options.maxItemsPerVersion} items`, 'items');
    }
    const uploads = await this.resolveUploads(em, actor, items);
    const prepared: PreparedItem[] = [];
    for (const [index, item] of items.entries()) {
      prepared.push(await this.prepareItem(index, item, uploads));
    }
    return this.recordVersion(em, actor, dataset, prepared, null);
  }

  /** Records a version from files already validated and stored (the synthetic generator uses this too). */
  async recordVersion(em: EntityManager, actor: Actor, dataset: DatasetEntity, prepared: PreparedItem[], synthetic: Record<string, unknown> | null) {
    const manifest: DatasetManifest = {
      datasetId: dataset.id,
      items: prepared.map((p) => ({
        before: { sha256: p.before.sha256, size: p.before.size, key: p.before.key },
        after: { sha256: p.after.sha256, size: p.after.size, key: p.after.key },
        label: p.label ? { sha256: p.label.sha256, size: p.label.size, key: p.label.key } : null,
        width: p.width,
        height: p.height,
        bands: p.bands,
      })),
    };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    const id = createHash('sha256').update(manifestBytes).digest('hex');
    const existing = await this.repository.findVersion(em, actor.tenant, id);
    if (existing) return existing;
    const manifestKey = `datasets/${actor.tenant}/${dataset.id}/manifests/${id}.json`;
    await this.store.put(manifestKey, manifestBytes, { contentType: 'application/json' });

    let created = false;
    const recorded = await em.transactional(async (tx) => {
      const locked = await this.repository.lockDataset(tx, actor.tenant, dataset.id);
      if (!locked) throw notFound('Dataset', dataset.id);
      const again = await this.repository.findVersion(tx, actor.tenant, id);
      if (again) return again;
      locked.versionCount += 1;
      const version = tx.create(DatasetVersionEntity, {
        id,
        tenant: actor.tenant,
        dataset: locked,
        number: locked.versionCount,
        itemCount: prepared.length,
        labelledCount: prepared.filter((p) => p.label).length,
        totalBytes: prepared.reduce((sum, p) => sum + p.before.size + p.after.size + (p.label?.size ?? 0), 0),
        manifestKey,
        synthetic,
        createdBy: actor.subject,
      });
      prepared.forEach((p, index) =>
        tx.create(DatasetItemEntity, {
          version,
          index,
          beforeKey: p.before.key,
          afterKey: p.after.key,
          labelKey: p.label?.key ?? null,
          width: p.width,
          height: p.height,
          bands: p.bands,
          format: p.format,
          beforeBytes: p.before.size,
          afterBytes: p.after.size,
          labelBytes: p.label?.size ?? null,
        }),
      );
      const previous = await tx.find(
        DatasetVersionEntity,
        { dataset: locked.id, tenant: actor.tenant, id: { $ne: id } },
        { fields: ['id'], orderBy: { number: 'desc' }, limit: PREVIOUS_VERSIONS_IN_EVENT },
      );
      // Logged in this transaction, published after commit: nobody hears of a version that was rolled back.
      await appendEvents(tx, [
        datasetVersionCreatedEvent({
          tenant: actor.tenant,
          datasetId: locked.id,
          datasetName: locked.name,
          versionId: id,
          number: version.number,
          itemCount: version.itemCount,
          labelledCount: version.labelledCount,
          synthetic: synthetic !== null,
          createdBy: actor.subject,
          previousVersionIds: previous.map((v) => v.id),
        }),
      ]);
      created = true;
      return version;
    });
    if (created) this.options.events?.kick();
    return recorded;
  }

  private async resolveUploads(em: EntityManager, actor: Actor, items: DatasetItemInput[]) {
    const ids = new Set<string>();
    items.forEach((item, i) => {
      for (const role of ['before', 'after', 'label'] as const) {
        const id = item[role];
        if (id === undefined || id === null) continue;
        if (!isUuid(id)) throw notFoundAt(`items[${i}].${role}`, id);
        ids.add(id);
      }
    });
    const found = await this.repository.findUploads(em, actor.tenant, [...ids]);
    const byId = new Map(found.map((u) => [u.id, u]));
    items.forEach((item, i) => {
      for (const role of ['before', 'after', 'label'] as const) {
        const id = item[role];
        if (id && !byId.has(id)) throw notFoundAt(`items[${i}].${role}`, id);
      }
    });
    return byId;
  }

  private async prepareItem(index: number, item: DatasetItemInput, uploads: Map<string, UploadObject>): Promise<PreparedItem> {
    const load = async (role: 'before' | 'after' | 'label', id: string) => {
      const upload = uploads.get(id)!;
      const field = `items[${index}].${role}`;
      const head = await this.store.head(upload.objectKey);
      if (!head) throw badInput(`${field}: upload ${id} has no bytes yet; PUT the file to its signed URL first`, field);
      if (head.size !== upload.byteSize) {
        throw badInput(`${field}: upload ${id} holds ${head.size} bytes, not the declared ${upload.byteSize}`, field);
      }
      const bytes = await this.store.get(upload.objectKey);
      let image: RasterImage;
      try {
        image = decodeImage(bytes, this.options.imageLimits);
      } catch (error) {
        if (error instanceof ImageDecodeError) throw badInput(`${field}: ${error.message}`, field, { problem: error.problem });
        throw error;
      }
      return { bytes, image };
    };
    const before = await load('before', item.before);
    const after = await load('after', item.after);
    const where = `items[${index}]`;
    if (before.image.width !== after.image.width || before.image.height !== after.image.height) {
      throw badInput(
        `${where}: before is ${before.image.width}×${before.image.height} but after is ${after.image.width}×${after.image.height}; a pair must match in size`,
        `${where}.after`,
      );
    }
    if (before.image.bands !== after.image.bands) {
      throw badInput(`${where}: before has ${before.image.bands} bands but after has ${after.image.bands}`, `${where}.after`);
    }
    let label: { bytes: Buffer; image: RasterImage } | null = null;
    if (item.label) {
      label = await load('label', item.label);
      if (label.image.width !== before.image.width || label.image.height !== before.image.height) {
        throw badInput(
          `${where}: the label is ${label.image.width}×${label.image.height} but the pair is ${before.image.width}×${before.image.height}`,
          `${where}.label`,
        );
      }
      if (!isBinaryMask(label.image)) {
        throw badInput(`${where}: the label is not binary; every pixel must be 0 (no change) or 255 (change)`, `${where}.label`);
      }
    }
    const tenantPrefix = uploads.get(item.before)!.tenant;
    return {
      before: await this.storeContent(tenantPrefix, before.bytes, uploads.get(item.before)!.contentType),
      after: await this.storeContent(tenantPrefix, after.bytes, uploads.get(item.after)!.contentType),
      label: label && item.label ? await this.storeContent(tenantPrefix, label.bytes, uploads.get(item.label)!.contentType) : null,
      width: before.image.width,
      height: before.image.height,
      bands: before.image.bands,
      format: before.image.header.format,
    };
  }

  /** Copies bytes to their content address once; later versions reuse the same object. */
  async storeContent(tenant: string, bytes: Buffer, contentType: string): Promise<StoredFile> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const key = `datasets/${tenant}/objects/${sha256}`;
    const head = await this.store.head(key);
    if (!head || head.size !== bytes.length) await this.store.put(key, bytes, { contentType });
    return { key, sha256, size: bytes.length };
  }
}

function notFoundAt(field: string, id: string) {
  const error = notFound('Upload', id);
  error.extensions.field = field;
  return error;
}

import { LockMode, type EntityManager } from '@mikro-orm/core';
import { qualifiedTable } from '../../lib/db.js';
import { paginate } from '../../lib/graphql/connection.js';
import { DatasetEntity } from './dataset.entity.js';
import { DatasetItemEntity } from './dataset-item.entity.js';
import { DatasetVersionEntity } from './dataset-version.entity.js';
import { UploadEntity } from './upload.entity.js';

/** What the platform needs to read an upload. */
export type UploadObject = Pick<UploadEntity, 'id' | 'tenant' | 'objectKey' | 'byteSize' | 'contentType' | 'filename'>;

/** Every query of the datasets subgraph, always scoped to one tenant. */
export class DatasetRepository {
  findDataset(em: EntityManager, tenant: string, id: string) {
    return em.findOne(DatasetEntity, { id, tenant });
  }

  findDatasetByName(em: EntityManager, tenant: string, name: string) {
    return em.findOne(DatasetEntity, { name, tenant });
  }

  pageDatasets<N>(em: EntityManager, tenant: string, args: { first?: number | null; after?: string | null }, map: (e: DatasetEntity) => N) {
    return paginate(em, DatasetEntity, { tenant }, args, map);
  }

  findVersion(em: EntityManager, tenant: string, id: string) {
    return em.findOne(DatasetVersionEntity, { id, tenant }, { populate: ['dataset'] });
  }

  findVersions(em: EntityManager, tenant: string, ids: readonly string[]) {
    return em.find(DatasetVersionEntity, { id: { $in: [...ids] }, tenant }, { populate: ['dataset'] });
  }

  latestVersion(em: EntityManager, datasetId: string) {
    return em.findOne(DatasetVersionEntity, { dataset: datasetId }, { orderBy: { number: 'desc' }, populate: ['dataset'] });
  }

  pageVersions<N>(em: EntityManager, tenant: string, datasetId: string, args: { first?: number | null; after?: string | null }, map: (e: DatasetVersionEntity) => N) {
    return paginate(em, DatasetVersionEntity, { tenant, dataset: datasetId }, args, map);
  }

  async pageItems(em: EntityManager, versionId: string, args: { first: number; offset: number }) {
    const [items, total] = await em.findAndCount(
      DatasetItemEntity,
      { version: versionId },
      { orderBy: { index: 'asc' }, limit: args.first, offset: args.offset },
    );
    return { items, total };
  }

  allItems(em: EntityManager, versionId: string) {
    return em.find(DatasetItemEntity, { version: versionId }, { orderBy: { index: 'asc' } });
  }

  /**
   * Where the tenant's uploads of these ids (uuids) are stored. Raw SQL: every detectChanges asks this (through the
   * upload-resolution RPC), and the ORM's query building and hydration cost more than the query.
   */
  async findUploads(em: EntityManager, tenant: string, ids: readonly string[]): Promise<UploadObject[]> {
    if (ids.length === 0) return [];
    const rows: { id: string; tenant: string; object_key: string; byte_size: string | number; content_type: string; filename: string }[] = await em
      .getConnection()
      .execute(
        `select "id", "tenant", "object_key", "byte_size", "content_type", "filename" from ${qualifiedTable(em, 'upload')} where "tenant" = ? and "id" in (${ids.map(() => '?').join(', ')})`,
        [tenant, ...ids],
        'all',
      );
    return rows.map((r) => ({ id: r.id, tenant: r.tenant, objectKey: r.object_key, byteSize: Number(r.byte_size), contentType: r.content_type, filename: r.filename }));
  }

  findUpload(em: EntityManager, tenant: string, id: string) {
    return em.findOne(UploadEntity, { id, tenant });
  }

  /** Locks the dataset row for the rest of the transaction so version numbers are handed out one at a time. */
  lockDataset(em: EntityManager, tenant: string, id: string) {
    return em.findOne(DatasetEntity, { id, tenant }, { lockMode: LockMode.PESSIMISTIC_WRITE });
  }
}

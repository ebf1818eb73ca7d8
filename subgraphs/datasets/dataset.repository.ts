import { LockMode, type EntityManager } from '@mikro-orm/core';
import { paginate } from '../../lib/graphql/connection.js';
import { DatasetEntity } from './dataset.entity.js';
import { DatasetItemEntity } from './dataset-item.entity.js';
import { DatasetVersionEntity } from './dataset-version.entity.js';
import { UploadEntity } from './upload.entity.js';

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

  findUploads(em: EntityManager, tenant: string, ids: readonly string[]) {
    return em.find(UploadEntity, { id: { $in: [...ids] }, tenant });
  }

  findUpload(em: EntityManager, tenant: string, id: string) {
    return em.findOne(UploadEntity, { id, tenant });
  }

  /** Locks the dataset row for the rest of the transaction so version numbers are handed out one at a time. */
  lockDataset(em: EntityManager, tenant: string, id: string) {
    return em.findOne(DatasetEntity, { id, tenant }, { lockMode: LockMode.PESSIMISTIC_WRITE });
  }
}

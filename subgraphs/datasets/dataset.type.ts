import { GraphQLJSON } from 'graphql-scalars';
import { Directive, Field, ID, Int, ObjectType } from 'type-graphql';
import { Connection } from '../../lib/graphql/connection.js';
import type { DatasetEntity } from './dataset.entity.js';
import type { DatasetItemEntity } from './dataset-item.entity.js';
import type { DatasetVersionEntity } from './dataset-version.entity.js';

@Directive('@key(fields: "id")')
@ObjectType({ description: 'A named collection of versioned image-pair sets' })
export class Dataset {
  @Field(() => ID)
  id!: string;

  @Field()
  name!: string;

  @Field()
  description!: string;

  @Field()
  createdBy!: string;

  @Field(() => Int)
  versionCount!: number;

  @Field()
  createdAt!: Date;

  @Field()
  updatedAt!: Date;
}

@ObjectType({ description: 'One stored file of a dataset item' })
export class DatasetObject {
  @Field({ description: 'Content-addressed object key' })
  key!: string;

  @Field(() => Int)
  byteSize!: number;
}

@ObjectType({ description: 'A co-registered before/after pair, with an optional binary change label' })
export class DatasetItem {
  @Field(() => Int)
  index!: number;

  @Field(() => DatasetObject)
  before!: DatasetObject;

  @Field(() => DatasetObject)
  after!: DatasetObject;

  @Field(() => DatasetObject, { nullable: true })
  label!: DatasetObject | null;

  @Field(() => Int)
  width!: number;

  @Field(() => Int)
  height!: number;

  @Field(() => Int)
  bands!: number;

  @Field()
  format!: string;
}

@Directive('@key(fields: "id")')
@ObjectType({ description: 'An immutable, content-addressed set of items: its id is the sha256 of its manifest' })
export class DatasetVersion {
  @Field(() => ID)
  id!: string;

  datasetId!: string;

  @Field(() => Int, { description: 'Sequential within the dataset: 1, 2, …' })
  number!: number;

  @Field(() => Int)
  itemCount!: number;

  @Field(() => Int)
  labelledCount!: number;

  @Field(() => Int)
  totalBytes!: number;

  @Field({ description: 'Object key of the JSON manifest the id hashes' })
  manifestKey!: string;

  @Field(() => GraphQLJSON, { nullable: true, description: 'Generator and parameters when the synthetic generator made the version' })
  synthetic!: Record<string, unknown> | null;

  @Field()
  createdBy!: string;

  @Field()
  createdAt!: Date;
}

export const DatasetConnection = Connection(Dataset, 'Dataset');
export const DatasetVersionConnection = Connection(DatasetVersion, 'DatasetVersion');
export const DatasetItemConnection = Connection(DatasetItem, 'DatasetItem');

export function toDataset(e: DatasetEntity): Dataset {
  return Object.assign(new Dataset(), {
    id: e.id,
    name: e.name,
    description: e.description,
    createdBy: e.createdBy,
    versionCount: e.versionCount,
    createdAt: e.createdAt,
    updatedAt: e.updatedAt,
  });
}

export function toDatasetVersion(e: DatasetVersionEntity): DatasetVersion {
  return Object.assign(new DatasetVersion(), {
    id: e.id,
    datasetId: e.dataset.id,
    number: e.number,
    itemCount: e.itemCount,
    labelledCount: e.labelledCount,
    totalBytes: e.totalBytes,
    manifestKey: e.manifestKey,
    synthetic: e.synthetic,
    createdBy: e.createdBy,
    createdAt: e.createdAt,
  });
}

export function toDatasetItem(e: DatasetItemEntity): DatasetItem {
  return Object.assign(new DatasetItem(), {
    index: e.index,
    before: { key: e.beforeKey, byteSize: e.beforeBytes },
    after: { key: e.afterKey, byteSize: e.afterBytes },
    label: e.labelKey ? { key: e.labelKey, byteSize: e.labelBytes ?? 0 } : null,
    width: e.width,
    height: e.height,
    bands: e.bands,
    format: e.format,
  });
}

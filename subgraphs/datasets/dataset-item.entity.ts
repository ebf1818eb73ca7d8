import { Entity, ManyToOne, PrimaryKey, Property, Unique, type Rel } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import { DatasetVersionEntity } from './dataset-version.entity.js';

@Entity({ tableName: 'dataset_item' })
@Unique({ properties: ['version', 'index'] })
export class DatasetItemEntity {
  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @ManyToOne(() => DatasetVersionEntity, { deleteRule: 'cascade' })
  version!: Rel<DatasetVersionEntity>;

  @Property({ type: 'integer' })
  index!: number;

  /** Content-addressed object keys (…/objects/<sha256>): immutable, shared by versions that reuse a file. */
  @Property({ type: 'text' })
  beforeKey!: string;

  @Property({ type: 'text' })
  afterKey!: string;

  @Property({ type: 'text', nullable: true })
  labelKey: string | null = null;

  @Property({ type: 'integer' })
  width!: number;

  @Property({ type: 'integer' })
  height!: number;

  @Property({ type: 'integer' })
  bands!: number;

  @Property({ type: 'text' })
  format!: string;

  @Property({ type: 'bigint', runtimeType: 'number' })
  beforeBytes!: number;

  @Property({ type: 'bigint', runtimeType: 'number' })
  afterBytes!: number;

  @Property({ type: 'bigint', runtimeType: 'number', nullable: true })
  labelBytes: number | null = null;
}

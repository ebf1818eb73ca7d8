import { Entity, Index, ManyToOne, OptionalProps, PrimaryKey, Property, Unique, type Rel } from '@mikro-orm/core';
import { DatasetEntity } from './dataset.entity.js';

/** Immutable once written: its id is the sha256 of its manifest, so the same items make the same version. */
@Entity({ tableName: 'dataset_version' })
@Unique({ properties: ['dataset', 'number'] })
export class DatasetVersionEntity {
  [OptionalProps]?: 'createdAt' | 'synthetic';

  @PrimaryKey({ type: 'text' })
  id!: string;

  @Index()
  @Property({ type: 'text' })
  tenant!: string;

  @ManyToOne(() => DatasetEntity, { deleteRule: 'cascade' })
  dataset!: Rel<DatasetEntity>;

  @Property({ type: 'integer' })
  number!: number;

  @Property({ type: 'integer' })
  itemCount!: number;

  @Property({ type: 'integer' })
  labelledCount!: number;

  @Property({ type: 'bigint', runtimeType: 'number' })
  totalBytes!: number;

  @Property({ type: 'text' })
  manifestKey!: string;

  /** Generator parameters when the version was made by the synthetic generator. */
  @Property({ type: 'json', nullable: true })
  synthetic: Record<string, unknown> | null = null;

  @Property({ type: 'text' })
  createdBy!: string;

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();
}

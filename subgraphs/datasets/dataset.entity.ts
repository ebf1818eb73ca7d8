import { Entity, Index, OptionalProps, PrimaryKey, Property, Unique } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';

@Entity({ tableName: 'dataset' })
@Index({
  name: 'dataset_tenant_created_index',
  expression: 'create index "dataset_tenant_created_index" on "datasets"."dataset" ("tenant", "created_at" desc, "id" desc)',
})
@Unique({ properties: ['tenant', 'name'] })
export class DatasetEntity {
  [OptionalProps]?: 'id' | 'createdAt' | 'updatedAt' | 'description' | 'versionCount';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Index()
  @Property({ type: 'text' })
  tenant!: string;

  @Property({ type: 'text' })
  name!: string;

  @Property({ type: 'text' })
  description: string = '';

  @Property({ type: 'text' })
  createdBy!: string;

  @Property({ type: 'integer' })
  versionCount: number = 0;

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();

  @Property({ type: 'timestamptz', onUpdate: () => new Date() })
  updatedAt: Date = new Date();
}

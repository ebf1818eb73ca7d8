import { Entity, ManyToOne, OptionalProps, PrimaryKey, Property, Unique, type Rel } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import { ModelVersionEntity } from './model-version.entity.js';
import { RegisteredModelEntity } from './registered-model.entity.js';

/**
 * A named pointer (`champion`, `challenger`) from a model to one of its versions: unique within the model, enforced
 * by the database. The version's `aliases` column repeats the names for reading; both change in one transaction.
 */
@Entity({ tableName: 'model_alias' })
@Unique({ properties: ['registeredModel', 'alias'] })
export class ModelAliasEntity {
  [OptionalProps]?: 'id' | 'updatedAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  @ManyToOne(() => RegisteredModelEntity, { deleteRule: 'cascade' })
  registeredModel!: Rel<RegisteredModelEntity>;

  @Property({ type: 'text' })
  alias!: string;

  @ManyToOne(() => ModelVersionEntity, { deleteRule: 'cascade' })
  modelVersion!: Rel<ModelVersionEntity>;

  @Property({ type: 'text' })
  updatedBy!: string;

  @Property({ type: 'timestamptz' })
  updatedAt: Date = new Date();
}

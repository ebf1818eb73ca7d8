import { Entity, Enum, Index, ManyToOne, OptionalProps, PrimaryKey, Property, type Rel } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import { MODEL_STAGES, type ModelStage } from './models.contracts.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { RegisteredModelEntity } from './registered-model.entity.js';

/** One stage change of one version: the history of which version served when, and what rollback restores. */
@Entity({ tableName: 'model_stage_change' })
@Index({
  name: 'model_stage_change_model_changed_index',
  expression: 'create index "model_stage_change_model_changed_index" on "models"."model_stage_change" ("registered_model_id", "changed_at" desc, "id" desc)',
})
export class ModelStageChangeEntity {
  [OptionalProps]?: 'id' | 'changedAt' | 'reason';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  @ManyToOne(() => RegisteredModelEntity, { deleteRule: 'cascade' })
  registeredModel!: Rel<RegisteredModelEntity>;

  @ManyToOne(() => ModelVersionEntity, { deleteRule: 'cascade' })
  modelVersion!: Rel<ModelVersionEntity>;

  @Enum({ items: () => MODEL_STAGES, type: 'text' })
  fromStage!: ModelStage;

  @Enum({ items: () => MODEL_STAGES, type: 'text' })
  toStage!: ModelStage;

  /** Subject of the person, or the component (`evaluation-gate`, `platform`), that made the change. */
  @Property({ type: 'text' })
  changedBy!: string;

  @Property({ type: 'text' })
  reason: string = '';

  @Property({ type: 'timestamptz' })
  changedAt: Date = new Date();
}

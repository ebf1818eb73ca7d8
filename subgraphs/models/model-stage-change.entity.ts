import { Entity, Enum, Index, ManyToOne, OptionalProps, PrimaryKey, Property, type Rel } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import { MODEL_HISTORY_KINDS, ModelHistoryKind } from './lifecycle.contracts.js';
import { MODEL_STAGES, type ModelStage } from './models.contracts.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { RegisteredModelEntity } from './registered-model.entity.js';

/**
 * One change of one version: a stage change, or an alias set on or removed from it. Append-only (a trigger refuses
 * updates and deletes): the history of which version served when, what `modelVersionAt` answers from and what
 * rollback restores. The records of one transaction share `changedAt` and are ordered by `position`, so that a
 * promotion and the archiving of the previous Production version happen at the same instant.
 */
@Entity({ tableName: 'model_stage_change' })
@Index({
  name: 'model_stage_change_model_changed_index',
  expression: 'create index "model_stage_change_model_changed_index" on "models"."model_stage_change" ("registered_model_id", "changed_at" desc, "id" desc)',
})
export class ModelStageChangeEntity {
  [OptionalProps]?: 'id' | 'changedAt' | 'reason' | 'kind' | 'alias' | 'previousModelVersion' | 'position';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  @ManyToOne(() => RegisteredModelEntity, { deleteRule: 'cascade' })
  registeredModel!: Rel<RegisteredModelEntity>;

  @ManyToOne(() => ModelVersionEntity, { deleteRule: 'cascade' })
  modelVersion!: Rel<ModelVersionEntity>;

  @Enum({ items: () => MODEL_HISTORY_KINDS, type: 'text', default: ModelHistoryKind.STAGE })
  kind: ModelHistoryKind = ModelHistoryKind.STAGE;

  /** For an alias change the version's stage at that moment, in both (an alias change leaves the stage alone). */
  @Enum({ items: () => MODEL_STAGES, type: 'text' })
  fromStage!: ModelStage;

  @Enum({ items: () => MODEL_STAGES, type: 'text' })
  toStage!: ModelStage;

  /** The alias set or removed (alias changes only). */
  @Property({ type: 'text', nullable: true })
  alias: string | null = null;

  /** The version an alias was moved away from (ALIAS_SET of an alias that pointed elsewhere). */
  @ManyToOne(() => ModelVersionEntity, { nullable: true, deleteRule: 'cascade' })
  previousModelVersion: Rel<ModelVersionEntity> | null = null;

  /** Subject of the person, or the component (`evaluation-gate`, `platform`), that made the change. */
  @Property({ type: 'text' })
  changedBy!: string;

  @Property({ type: 'text' })
  reason: string = '';

  @Property({ type: 'timestamptz' })
  changedAt: Date = new Date();

  /** Order of the records written in one transaction (same `changedAt`). */
  @Property({ type: 'integer', default: 0 })
  position: number = 0;
}

import { ArrayType, Entity, Enum, Index, ManyToOne, OptionalProps, PrimaryKey, Property, Unique, type Rel } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import {
  MODEL_STAGES,
  MODEL_VERSION_SOURCES,
  ModelStage,
  type EvaluationMetrics,
  type ModelContract,
  type GateDecision,
  type ModelVersionSource,
} from './models.contracts.js';
import type { EvaluationRecord } from './model-evaluation.contracts.js';
import { RegisteredModelEntity } from './registered-model.entity.js';
import { TrainingRunEntity } from './training-run.entity.js';

@Entity({ tableName: 'model_version' })
@Unique({ properties: ['registeredModel', 'version'] })
@Index({
  name: 'model_version_registered_model_created_index',
  expression:
    'create index "model_version_registered_model_created_index" on "models"."model_version" ("registered_model_id", "created_at" desc, "id" desc)',
})
// At most one Production version per model, enforced by the database: a promotion archives the previous one first.
@Index({
  name: 'model_version_one_production_unique',
  expression:
    'create unique index "model_version_one_production_unique" on "models"."model_version" ("registered_model_id") where "stage" = \'PRODUCTION\'',
})
export class ModelVersionEntity {
  [OptionalProps]?: 'id' | 'stage' | 'aliases' | 'metrics' | 'trainingRun' | 'createdAt' | 'updatedAt' | 'gate' | 'referenceStatsKey' | 'mlflowVersion' | 'evaluation';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @ManyToOne(() => RegisteredModelEntity, { deleteRule: 'cascade' })
  registeredModel!: Rel<RegisteredModelEntity>;

  /** Always the registered model's tenant, repeated so every query can filter on it. */
  @Index()
  @Property({ type: 'text' })
  tenant!: string;

  /** Sequential within the registered model: 1, 2, … */
  @Property({ type: 'integer' })
  version!: number;

  @Enum({ items: () => MODEL_STAGES, type: 'text' })
  stage: ModelStage = ModelStage.NONE;

  @Property({ type: ArrayType })
  aliases: string[] = [];

  /** Object key of the ONNX file. */
  @Property({ type: 'text' })
  artifactKey!: string;

  @Property({ type: 'text' })
  sha256!: string;

  @Property({ type: 'bigint', runtimeType: 'number' })
  byteSize!: number;

  @Property({ type: 'json' })
  metrics: EvaluationMetrics = {};

  @Property({ type: 'json' })
  contract!: ModelContract;

  @ManyToOne(() => TrainingRunEntity, { nullable: true, deleteRule: 'set null' })
  trainingRun: Rel<TrainingRunEntity> | null = null;

  @Enum({ items: () => MODEL_VERSION_SOURCES, type: 'text' })
  source!: ModelVersionSource;

  @Property({ type: 'text' })
  createdBy!: string;

  /** The evaluation gate's decision, for trained versions. */
  @Property({ type: 'json', nullable: true })
  gate: GateDecision | null = null;

  /**
   * Its evaluation on the model's frozen evaluation dataset version (model-evaluation.service.ts): pending, the metrics
   * and confusion counts, or why it failed. Uploaded versions are gated on it.
   */
  @Property({ type: 'json', nullable: true })
  evaluation: EvaluationRecord | null = null;

  /** Object key of the drift reference statistics computed on the training split. */
  @Property({ type: 'text', nullable: true })
  referenceStatsKey: string | null = null;

  /** The mirrored version number in MLflow's registry, when MLFLOW_TRACKING_URI is set. */
  @Property({ type: 'text', nullable: true })
  mlflowVersion: string | null = null;

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();

  @Property({ type: 'timestamptz', onUpdate: () => new Date() })
  updatedAt: Date = new Date();
}

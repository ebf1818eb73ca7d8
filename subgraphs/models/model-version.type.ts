import { GraphQLJSON } from 'graphql-scalars';
import { Directive, Field, Float, ID, Int, ObjectType, registerEnumType } from 'type-graphql';
import { Connection } from '../../lib/graphql/connection.js';
import {
  ModelStage,
  ModelVersionSource,
  PLATFORM_TENANT,
  type EvaluationMetrics,
  type GateDecision as GateDecisionData,
  type ModelContract,
} from './models.contracts.js';
import type { ModelStageChangeEntity } from './model-stage-change.entity.js';
import type { ModelVersionEntity } from './model-version.entity.js';
import type { RegisteredModelEntity } from './registered-model.entity.js';

registerEnumType(ModelStage, { name: 'ModelStage', description: 'Lifecycle stage; at most one version of a model is in PRODUCTION' });
registerEnumType(ModelVersionSource, { name: 'ModelVersionSource', description: 'TRAINED by a training run, or UPLOADED from elsewhere' });

@Directive('@key(fields: "id")')
@ObjectType({ description: 'A named model and its versions; platform-wide models are visible to every tenant' })
export class RegisteredModel {
  @Field(() => ID)
  id!: string;

  tenant!: string;

  @Field()
  name!: string;

  @Field()
  description!: string;

  @Field({ description: 'Provided by the platform to every tenant (for example the demo model)' })
  platformWide!: boolean;

  @Field()
  createdAt!: Date;
}

@ObjectType({ description: 'Why a trained version did or did not pass the evaluation gate to STAGING' })
export class GateDecision {
  @Field()
  passed!: boolean;

  @Field(() => [String], { description: 'One line per check' })
  reasons!: string[];

  @Field(() => GraphQLJSON, { description: 'Minimum value per metric' })
  thresholds!: Record<string, number>;

  @Field(() => Float, { description: 'Largest allowed drop below the Production version' })
  maxRegression!: number;

  @Field(() => ID, { nullable: true, description: 'The Production version compared with' })
  comparedWithVersionId!: string | null;

  @Field()
  evaluatedAt!: Date;
}

@ObjectType({ description: 'One stage change of a version: who moved it, when, from where to where' })
export class StageChange {
  @Field(() => ID)
  versionId!: string;

  @Field(() => Int)
  version!: number;

  @Field(() => ModelStage)
  fromStage!: ModelStage;

  @Field(() => ModelStage)
  toStage!: ModelStage;

  @Field()
  changedBy!: string;

  @Field()
  reason!: string;

  @Field()
  changedAt!: Date;
}

@Directive('@key(fields: "id")')
@ObjectType({ description: 'One immutable ONNX file of a registered model, with its stage, metrics and contract' })
export class ModelVersion {
  @Field(() => ID)
  id!: string;

  tenant!: string;

  registeredModelId!: string;

  trainingRunId!: string | null;

  @Field(() => Int, { description: 'Sequential within the registered model: 1, 2, …' })
  version!: number;

  @Field(() => ModelStage)
  stage!: ModelStage;

  @Field(() => [String])
  aliases!: string[];

  @Field({ description: 'Object key of the ONNX file' })
  artifactKey!: string;

  @Field()
  sha256!: string;

  @Field(() => Int)
  byteSize!: number;

  @Field(() => GraphQLJSON, { description: 'Evaluation metrics by name' })
  metrics!: EvaluationMetrics;

  @Field(() => GraphQLJSON, { description: 'ONNX contract: bands, normalisation, tile size, threshold, inputs and outputs' })
  contract!: ModelContract;

  @Field(() => ModelVersionSource)
  source!: ModelVersionSource;

  @Field(() => GateDecision, { nullable: true, description: "The evaluation gate's decision (trained versions)" })
  gate!: GateDecision | null;

  @Field(() => String, { nullable: true, description: 'Object key of the drift reference statistics of the training split' })
  referenceStatsKey!: string | null;

  @Field()
  createdBy!: string;

  @Field()
  createdAt!: Date;
}

export const RegisteredModelConnection = Connection(RegisteredModel, 'RegisteredModel');
export const ModelVersionConnection = Connection(ModelVersion, 'ModelVersion');

export function toRegisteredModel(e: RegisteredModelEntity): RegisteredModel {
  return Object.assign(new RegisteredModel(), {
    id: e.id,
    tenant: e.tenant,
    name: e.name,
    description: e.description,
    platformWide: e.tenant === PLATFORM_TENANT,
    createdAt: e.createdAt,
  });
}

export function toModelVersion(e: ModelVersionEntity): ModelVersion {
  return Object.assign(new ModelVersion(), {
    id: e.id,
    tenant: e.tenant,
    registeredModelId: e.registeredModel.id,
    trainingRunId: e.trainingRun?.id ?? null,
    version: e.version,
    stage: e.stage,
    aliases: e.aliases,
    artifactKey: e.artifactKey,
    sha256: e.sha256,
    byteSize: e.byteSize,
    metrics: e.metrics,
    contract: e.contract,
    source: e.source,
    gate: e.gate ? toGateDecision(e.gate) : null,
    referenceStatsKey: e.referenceStatsKey,
    createdBy: e.createdBy,
    createdAt: e.createdAt,
  });
}

export function toGateDecision(d: GateDecisionData): GateDecision {
  return Object.assign(new GateDecision(), {
    passed: d.passed,
    reasons: d.reasons,
    thresholds: d.thresholds,
    maxRegression: d.maxRegression,
    comparedWithVersionId: d.comparedWith?.versionId ?? null,
    evaluatedAt: new Date(d.evaluatedAt),
  });
}

export function toStageChange(e: ModelStageChangeEntity): StageChange {
  return Object.assign(new StageChange(), {
    versionId: e.modelVersion.id,
    version: e.modelVersion.version,
    fromStage: e.fromStage,
    toStage: e.toStage,
    changedBy: e.changedBy,
    reason: e.reason,
    changedAt: e.changedAt,
  });
}

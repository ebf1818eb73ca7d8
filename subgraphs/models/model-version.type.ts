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
import { ModelEvaluation, toModelEvaluation } from './model-evaluation.type.js';
import { EvaluationSource, ModelHistoryKind, PromotionStatus } from './lifecycle.contracts.js';
import type { ModelAliasEntity } from './model-alias.entity.js';
import type { ModelStageChangeEntity } from './model-stage-change.entity.js';
import type { PromotionRequestEntity } from './promotion-request.entity.js';
import type { ModelVersionEntity } from './model-version.entity.js';
import type { RegisteredModelEntity } from './registered-model.entity.js';

registerEnumType(ModelStage, { name: 'ModelStage', description: 'Lifecycle stage; at most one version of a model is in PRODUCTION' });
registerEnumType(ModelVersionSource, { name: 'ModelVersionSource', description: 'TRAINED by a training run, or UPLOADED from elsewhere' });
registerEnumType(PromotionStatus, {
  name: 'PromotionStatus',
  description: 'PENDING until an approver other than the requester approves or rejects it, or its requester (or an admin) cancels it',
});
registerEnumType(ModelHistoryKind, {
  name: 'ModelHistoryKind',
  description: 'A stage change, an alias set or removed, or a pending promotion request cancelled or rejected (the stage unchanged)',
});
registerEnumType(EvaluationSource, { name: 'EvaluationSource', description: "The training run's gate, or the automatic evaluation of an uploaded version" });

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

  @Field(() => String, { nullable: true, description: 'The dataset version chosen with setEvaluationDataset; null: the default (see evaluationDataset)' })
  evaluationDatasetVersionId!: string | null;

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

  @Field(() => GateDecision, { nullable: true, description: "The evaluation gate's decision (trained versions; uploaded ones once evaluated)" })
  gate!: GateDecision | null;

  @Field(() => String, { nullable: true, description: 'Object key of the drift reference statistics of the training split' })
  referenceStatsKey!: string | null;

  @Field(() => ModelEvaluation, { nullable: true, description: "Its evaluation on the model's frozen evaluation dataset version; uploaded versions are gated on it" })
  evaluation!: ModelEvaluation | null;

  @Field()
  createdBy!: string;

  @Field()
  createdAt!: Date;
}

@ObjectType({
  description:
    'One change in the history of a model: a stage change of a version, or an alias set on (or moved to) a version or removed from it; who, when, why',
})
export class StageChange {
  @Field(() => ID)
  id!: string;

  @Field(() => ModelHistoryKind)
  kind!: ModelHistoryKind;

  @Field(() => ModelVersion)
  modelVersion!: ModelVersion;

  @Field(() => ID, { description: 'Same as modelVersion.id' })
  versionId!: string;

  @Field(() => Int)
  version!: number;

  @Field(() => ModelStage, { description: 'For an alias change: the stage the version was in (it does not change)' })
  fromStage!: ModelStage;

  @Field(() => ModelStage)
  toStage!: ModelStage;

  @Field(() => String, { nullable: true, description: 'The alias set or removed (alias changes only)' })
  alias!: string | null;

  @Field(() => ModelVersion, { nullable: true, description: 'The version an alias was moved away from' })
  previousModelVersion!: ModelVersion | null;

  @Field({ description: 'Subject of the person, or the component (evaluation-gate, platform), that made the change' })
  actor!: string;

  @Field({ description: 'Same as actor' })
  changedBy!: string;

  @Field()
  reason!: string;

  @Field()
  at!: Date;

  @Field({ description: 'Same as at' })
  changedAt!: Date;
}

@ObjectType({ description: 'A named pointer from a model to one of its versions (champion, challenger, …)' })
export class ModelAlias {
  @Field()
  alias!: string;

  @Field(() => ModelVersion)
  modelVersion!: ModelVersion;

  @Field()
  updatedBy!: string;

  @Field()
  updatedAt!: Date;
}

@ObjectType({ description: 'The evaluation a promotion was requested on, measured on a frozen dataset version' })
export class EvaluationEvidence {
  @Field(() => EvaluationSource)
  source!: EvaluationSource;

  @Field()
  passed!: boolean;

  @Field(() => GraphQLJSON, { description: 'Metrics by name (f1, iou, …)' })
  metrics!: Record<string, number>;

  @Field(() => ID, { nullable: true, description: 'The frozen dataset version the metrics come from' })
  datasetVersionId!: string | null;

  @Field(() => GateDecision, { nullable: true })
  gate!: GateDecision | null;

  @Field(() => GraphQLJSON, { nullable: true, description: 'The automatic evaluation report as stored (uploaded versions)' })
  report!: Record<string, unknown> | null;

  @Field(() => String, { nullable: true })
  evaluatedAt!: string | null;
}

@ObjectType({ description: 'The latest drift report of the model when the promotion was requested (a copy)' })
export class DriftReportEvidence {
  @Field(() => ID)
  id!: string;

  @Field(() => ID, { nullable: true })
  modelVersionId!: string | null;

  @Field()
  windowStart!: string;

  @Field()
  windowEnd!: string;

  @Field(() => Int)
  sampleCount!: number;

  @Field()
  drifted!: boolean;

  @Field(() => GraphQLJSON)
  metrics!: Record<string, unknown>;

  @Field()
  createdAt!: string;
}

@ObjectType({ description: 'What a promotion request was made on, collected when it was made' })
export class PromotionEvidence {
  @Field(() => EvaluationEvidence)
  evaluation!: EvaluationEvidence;

  @Field(() => DriftReportEvidence, { nullable: true, description: 'Null when the model had no drift report yet (see driftNote)' })
  driftReport!: DriftReportEvidence | null;

  @Field(() => String, { nullable: true })
  driftNote!: string | null;

  @Field()
  collectedAt!: string;
}

@ObjectType({ description: 'A request to promote a STAGING version to PRODUCTION, decided by an approver other than the requester' })
export class PromotionRequest {
  @Field(() => ID)
  id!: string;

  @Field(() => PromotionStatus)
  status!: PromotionStatus;

  @Field(() => ModelVersion)
  modelVersion!: ModelVersion;

  @Field()
  modelName!: string;

  @Field()
  requestedBy!: string;

  @Field()
  reason!: string;

  @Field(() => PromotionEvidence)
  evidence!: PromotionEvidence;

  @Field()
  createdAt!: Date;

  @Field(() => String, { nullable: true })
  decidedBy!: string | null;

  @Field(() => Date, { nullable: true })
  decidedAt!: Date | null;

  @Field(() => String, { nullable: true })
  decisionReason!: string | null;
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
    evaluationDatasetVersionId: e.evaluationDatasetVersionId,
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
    evaluation: e.evaluation ? toModelEvaluation(e.evaluation) : null,
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
    id: e.id,
    kind: e.kind,
    modelVersion: toModelVersion(e.modelVersion),
    versionId: e.modelVersion.id,
    version: e.modelVersion.version,
    fromStage: e.fromStage,
    toStage: e.toStage,
    alias: e.alias,
    previousModelVersion: e.previousModelVersion ? toModelVersion(e.previousModelVersion) : null,
    actor: e.changedBy,
    changedBy: e.changedBy,
    reason: e.reason,
    at: e.changedAt,
    changedAt: e.changedAt,
  });
}

export function toModelAlias(e: ModelAliasEntity): ModelAlias {
  return Object.assign(new ModelAlias(), { alias: e.alias, modelVersion: toModelVersion(e.modelVersion), updatedBy: e.updatedBy, updatedAt: e.updatedAt });
}

/** The request with its version and model loaded (the repository populates both). */
export function toPromotionRequest(e: PromotionRequestEntity): PromotionRequest {
  const evaluation = e.evidence.evaluation;
  return Object.assign(new PromotionRequest(), {
    id: e.id,
    status: e.status,
    modelVersion: toModelVersion(e.modelVersion),
    modelName: e.registeredModel.name,
    requestedBy: e.requestedBy,
    reason: e.reason,
    evidence: Object.assign(new PromotionEvidence(), {
      evaluation: Object.assign(new EvaluationEvidence(), { ...evaluation, gate: evaluation.gate ? toGateDecision(evaluation.gate) : null }),
      driftReport: e.evidence.drift.report ? Object.assign(new DriftReportEvidence(), e.evidence.drift.report) : null,
      driftNote: e.evidence.drift.note,
      collectedAt: e.evidence.collectedAt,
    }),
    createdAt: e.createdAt,
    decidedBy: e.decidedBy,
    decidedAt: e.decidedAt,
    decisionReason: e.decisionReason,
  });
}

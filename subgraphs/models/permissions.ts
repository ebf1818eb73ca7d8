import type { IRules } from 'graphql-shield';
import { rule } from 'graphql-shield';
import { forbidden } from '../../lib/errors.js';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { allow, canRead, hasCapability, isApprover, isMlEngineer, sameAsParent } from '../../lib/rbac.js';
import { ModelStage } from './models.contracts.js';

/**
 * Moving a version between NONE, STAGING and ARCHIVED needs the ml-engineer role. PRODUCTION is never reached this
 * way: engineers and approvers get through to the service, which refuses it and points to requestPromotion. (Taking
 * the Production version out of Production also needs the approver role; only the service knows the current stage.)
 */
export const canTransition = rule('can-transition-model-version', { cache: 'strict' })((_parent, args: { stage?: string }, ctx: RequestContext) => {
  const roles = ctx.identity?.roles ?? [];
  if (args.stage === ModelStage.PRODUCTION && hasCapability(roles, 'approver')) return true;
  return hasCapability(roles, 'ml-engineer') ? true : forbidden('This needs the ml-engineer role');
});

/** Who may do what in the models subgraph; anything not named here is denied. */
export const modelsPermissions: IRules = {
  Query: {
    trainingRuns: canRead,
    trainingRun: canRead,
    registeredModels: canRead,
    registeredModel: canRead,
    modelVersion: canRead,
    promotionRequests: canRead,
    promotionRequest: canRead,
    stageHistory: canRead,
    modelVersionAt: canRead,
  },
  Mutation: {
    startTraining: isMlEngineer,
    cancelTraining: isMlEngineer,
    registerModelVersion: isMlEngineer,
    transitionModelVersion: canTransition,
    rollbackModel: isApprover,
    // Four eyes (the decider is not the requester) is the service's rule, on top of the role.
    requestPromotion: isMlEngineer,
    approvePromotion: isApprover,
    rejectPromotion: isApprover,
    // Only the requester (or an admin of the tenant) may cancel: the service's rule, on top of the role that requests.
    cancelPromotionRequest: isMlEngineer,
    setModelAlias: isMlEngineer,
    removeModelAlias: isMlEngineer,
    setEvaluationDataset: isMlEngineer,
    evaluateModelVersion: isMlEngineer,
  },
  TrainingRun: canRead,
  Subscription: {
    trainingProgress: canRead,
    modelVersionStageChanged: canRead,
  },
  TrainingProgressEvent: sameAsParent,
  TrainingMetricPoint: sameAsParent,
  ModelStageEvent: sameAsParent,
  RegisteredModel: canRead,
  ModelVersion: canRead,
  Metric: sameAsParent,
  Artifact: sameAsParent,
  GateDecision: sameAsParent,
  ModelEvaluation: sameAsParent,
  ConfusionCounts: sameAsParent,
  EvaluationDataset: sameAsParent,
  StageChange: sameAsParent,
  ModelAlias: sameAsParent,
  PromotionRequest: sameAsParent,
  PromotionEvidence: sameAsParent,
  EvaluationEvidence: sameAsParent,
  DriftReportEvidence: sameAsParent,
  TrainingRunConnection: sameAsParent,
  TrainingRunEdge: sameAsParent,
  RegisteredModelConnection: sameAsParent,
  RegisteredModelEdge: sameAsParent,
  ModelVersionConnection: sameAsParent,
  ModelVersionEdge: sameAsParent,
  PageInfo: sameAsParent,
  // A reference to the datasets subgraph's entity carries only its key; the owner checks access.
  DatasetVersion: allow,
};

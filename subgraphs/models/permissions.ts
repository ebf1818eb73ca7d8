import type { IRules } from 'graphql-shield';
import { rule } from 'graphql-shield';
import { forbidden } from '../../lib/errors.js';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { allow, canRead, hasCapability, isApprover, isMlEngineer, sameAsParent } from '../../lib/rbac.js';
import { ModelStage } from './models.contracts.js';

/**
 * Moving a version to PRODUCTION needs the approver role, any other stage the ml-engineer role. (Taking the
 * Production version out of Production also needs the approver role; only the service knows the current stage.)
 */
export const canTransition = rule('can-transition-model-version', { cache: 'strict' })((_parent, args: { stage?: string }, ctx: RequestContext) => {
  const roles = ctx.identity?.roles ?? [];
  if (args.stage === ModelStage.PRODUCTION) return hasCapability(roles, 'approver') ? true : forbidden('Promoting to PRODUCTION needs the approver role');
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
  },
  Mutation: {
    startTraining: isMlEngineer,
    cancelTraining: isMlEngineer,
    registerModelVersion: isMlEngineer,
    transitionModelVersion: canTransition,
    rollbackModel: isApprover,
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
  StageChange: sameAsParent,
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

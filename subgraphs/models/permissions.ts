import type { IRules } from 'graphql-shield';
import { allow, canRead, sameAsParent } from '../../lib/rbac.js';

/** Who may do what in the models subgraph; anything not named here is denied. */
export const modelsPermissions: IRules = {
  Query: {
    trainingRuns: canRead,
    trainingRun: canRead,
    registeredModels: canRead,
    registeredModel: canRead,
    modelVersion: canRead,
  },
  TrainingRun: canRead,
  RegisteredModel: canRead,
  ModelVersion: canRead,
  Metric: sameAsParent,
  Artifact: sameAsParent,
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

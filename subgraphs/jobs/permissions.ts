import type { IRules } from 'graphql-shield';
import { allow, canRead, sameAsParent } from '../../lib/rbac.js';

/** Who may do what in the jobs subgraph; anything not named here is denied. */
export const jobsPermissions: IRules = {
  Query: {
    jobs: canRead,
    job: canRead,
  },
  Job: canRead,
  JobPair: sameAsParent,
  ChangeStats: sameAsParent,
  JobConnection: sameAsParent,
  JobEdge: sameAsParent,
  JobPairConnection: sameAsParent,
  JobPairEdge: sameAsParent,
  PageInfo: sameAsParent,
  // References to entities of other subgraphs carry only their key; the owner checks access.
  ModelVersion: allow,
  DatasetVersion: allow,
};

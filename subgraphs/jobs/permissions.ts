import type { IRules } from 'graphql-shield';
import { allow, canRead, isAnalyst, sameAsParent } from '../../lib/rbac.js';

/** Who may do what in the jobs subgraph; anything not named here is denied. */
export const jobsPermissions: IRules = {
  Query: {
    jobs: canRead,
    job: canRead,
  },
  Mutation: {
    // Analysts run change detection; cancelJob further checks that a non-admin cancels only their own job.
    detectChanges: isAnalyst,
    submitChangeDetectionJob: isAnalyst,
    cancelJob: isAnalyst,
  },
  Subscription: {
    jobProgress: canRead,
    jobUpdates: canRead,
  },
  JobProgressEvent: sameAsParent,
  JobPairUpdate: sameAsParent,
  Job: canRead,
  JobPair: sameAsParent,
  ChangeResult: sameAsParent,
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

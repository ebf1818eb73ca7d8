// Who may call each root field of the supergraph: THE table the authorization matrix test checks, role by role,
// through the running gateway. Every Query and Mutation field of schema/supergraph.graphql must have a row (a field
// without one fails the test; a row for a field the committed supergraph does not have yet is not checked until it
// has): when you add a mutation, add it here with the roles the README's role table gives it.
//
// Roles: viewer (read) · analyst (upload, run jobs, cancel own jobs, feedback) · ml-engineer (datasets, training,
// register versions, Staging, drift policies) · approver (Production, rollback) · admin (all of the above in its
// tenant, plus audit log, dead letters, quotas). Domain rules such as four-eyes approval and "own jobs only" are
// checked by the owning service on top of these and are tested there.
import type { Role } from '../../lib/auth.js';

export const ALL_ROLES: readonly Role[] = ['viewer', 'analyst', 'ml-engineer', 'approver', 'admin'];

const READ: readonly Role[] = ALL_ROLES;
const ANALYST: readonly Role[] = ['analyst', 'ml-engineer', 'admin'];
const ML_ENGINEER: readonly Role[] = ['ml-engineer', 'admin'];
export const APPROVER: readonly Role[] = ['approver', 'admin'];
const ADMIN: readonly Role[] = ['admin'];

export interface FieldExpectation {
  /** Roles that pass authorisation; every other role gets FORBIDDEN. */
  allowed: readonly Role[];
  /** Arguments to send instead of the generated ones (the test generates minimal valid-looking values). */
  variables?: Record<string, unknown>;
}

export const EXPECTED_MUTATIONS: Record<string, FieldExpectation> = {
  detectChanges: { allowed: ANALYST },
  submitChangeDetectionJob: { allowed: ANALYST },
  acknowledgeDriftAlert: { allowed: ANALYST },
  cancelJob: { allowed: ANALYST }, // the jobs service lets only admins cancel other people's jobs
  createUpload: { allowed: ANALYST },
  createDataset: { allowed: ML_ENGINEER },
  createDatasetVersion: { allowed: ML_ENGINEER },
  createSyntheticDatasetVersion: { allowed: ML_ENGINEER },
  startTraining: { allowed: ML_ENGINEER },
  cancelTraining: { allowed: ML_ENGINEER },
  registerModelVersion: { allowed: ML_ENGINEER },
  // The probe moves a version to NONE; PRODUCTION is refused for everyone (requestPromotion instead).
  transitionModelVersion: { allowed: ML_ENGINEER },
  rollbackModel: { allowed: APPROVER },
  submitFeedback: { allowed: ANALYST },
  // Approving or rejecting one's own request is refused by the service (four eyes; test/e2e/lifecycle.test.ts).
  requestPromotion: { allowed: ML_ENGINEER },
  approvePromotion: { allowed: APPROVER },
  rejectPromotion: { allowed: APPROVER },
  // Cancelling someone else's request is refused by the service unless the caller is an admin (model-lifecycle.service.test.ts).
  cancelPromotionRequest: { allowed: ML_ENGINEER },
  setModelAlias: { allowed: ML_ENGINEER },
  removeModelAlias: { allowed: ML_ENGINEER },
  setEvaluationDataset: { allowed: ML_ENGINEER },
  evaluateModelVersion: { allowed: ML_ENGINEER },
  setRetrainingPolicy: { allowed: ML_ENGINEER },
  triggerRetraining: { allowed: ML_ENGINEER },
};

export const EXPECTED_QUERIES: Record<string, FieldExpectation> = {
  datasets: { allowed: READ },
  dataset: { allowed: READ },
  datasetVersion: { allowed: READ },
  upload: { allowed: ANALYST },
  jobs: { allowed: READ },
  job: { allowed: READ },
  trainingRuns: { allowed: READ },
  trainingRun: { allowed: READ },
  registeredModels: { allowed: READ },
  registeredModel: { allowed: READ },
  modelVersion: { allowed: READ },
  promotionRequests: { allowed: READ },
  promotionRequest: { allowed: READ },
  stageHistory: { allowed: READ },
  modelVersionAt: { allowed: READ },
  auditEvents: { allowed: ADMIN },
  driftReports: { allowed: READ },
  driftAlerts: { allowed: READ },
  driftAlert: { allowed: READ },
  modelPerformance: { allowed: READ },
  retrainingPolicy: { allowed: READ },
  retrainingDecisions: { allowed: READ },
};

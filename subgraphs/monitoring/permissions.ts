import type { IRules } from 'graphql-shield';
import { allow, canRead, isAdmin, isAnalyst, isMlEngineer, sameAsParent } from '../../lib/rbac.js';

/** Who may do what in the monitoring subgraph; anything not named here is denied. */
export const monitoringPermissions: IRules = {
  Query: {
    driftAlert: canRead,
    auditEvents: isAdmin,
    driftReports: canRead,
    driftAlerts: canRead,
    modelPerformance: canRead,
    retrainingPolicy: canRead,
    retrainingDecisions: canRead,
  },
  Mutation: {
    acknowledgeDriftAlert: isAnalyst,
    submitFeedback: isAnalyst,
    setRetrainingPolicy: isMlEngineer,
    triggerRetraining: isMlEngineer,
  },
  Subscription: {
    driftAlerts: canRead,
  },
  DriftAlertEvent: sameAsParent,
  AuditEvent: isAdmin,
  AuditEventConnection: sameAsParent,
  AuditEventEdge: sameAsParent,
  DriftReport: canRead,
  DriftReportConnection: sameAsParent,
  DriftReportEdge: sameAsParent,
  DriftAlert: canRead,
  DriftAlertConnection: sameAsParent,
  DriftAlertEdge: sameAsParent,
  PageInfo: sameAsParent,
  ModelVersion: allow,
  Feedback: canRead,
  FeedbackBatch: sameAsParent,
  ModelVersionPerformance: canRead,
  RetrainingPolicy: canRead,
  RetrainingDecision: canRead,
  TrainingRun: allow,
};

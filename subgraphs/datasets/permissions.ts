import type { IRules } from 'graphql-shield';
import { canRead, isAnalyst, isMlEngineer, sameAsParent } from '../../lib/rbac.js';

/** Who may do what in the datasets subgraph; anything not named here is denied. */
export const datasetsPermissions: IRules = {
  Query: {
    datasets: canRead,
    dataset: canRead,
    datasetVersion: canRead,
    upload: isAnalyst,
  },
  Mutation: {
    createUpload: isAnalyst,
    createDataset: isMlEngineer,
    createDatasetVersion: isMlEngineer,
    createSyntheticDatasetVersion: isMlEngineer,
  },
  Dataset: canRead,
  DatasetVersion: canRead,
  DatasetItem: sameAsParent,
  DatasetObject: sameAsParent,
  Upload: sameAsParent,
  HttpHeader: sameAsParent,
  DatasetConnection: sameAsParent,
  DatasetEdge: sameAsParent,
  DatasetVersionConnection: sameAsParent,
  DatasetVersionEdge: sameAsParent,
  DatasetItemConnection: sameAsParent,
  DatasetItemEdge: sameAsParent,
  PageInfo: sameAsParent,
};

// Owns what people do with versions after training: bringing their own ONNX file (checked against the model-file
// contract by onnxruntime-node before anything is stored), moving versions between stages, and rolling a model back
// to the version that served before.
import { createHash } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/core';
import { BrokerTimeoutError, type Broker } from '../../lib/broker/broker.js';
import type { Identity } from '../../lib/auth.js';
import { badInput, conflict, forbidden, notFound, unavailable } from '../../lib/errors.js';
import { isUuid } from '../../lib/ids.js';
import { registryContract } from '../../lib/model/contract.js';
import { hasCapability } from '../../lib/rbac.js';
import type { ObjectStore } from '../../lib/storage/index.js';
import { requestUploadResolution } from '../datasets/upload-resolution.rpc.js';
import { checkModelFile, ModelContractError } from './model-file.check.js';
import { checkModelName } from './model-registry.inputs.js';
import type { ModelRegistryRepository } from './model-registry.repository.js';
import type { ModelRegistryService } from './model-registry.service.js';
import type { ModelVersionEntity } from './model-version.entity.js';
import { MODEL_STAGES, ModelStage, ModelVersionSource } from './models.contracts.js';
import { modelArtifactKey } from './training.contracts.js';

export interface ModelLifecycleOptions {
  broker: Broker;
  store: ObjectStore;
  rpcTimeoutMs: number;
  maxUploadBytes: number;
}

type Caller = Pick<Identity, 'tenant' | 'subject' | 'roles'>;

export class ModelLifecycleService {
  constructor(
    private readonly repository: ModelRegistryRepository,
    private readonly registry: ModelRegistryService,
    private readonly options: ModelLifecycleOptions,
  ) {}

  /**
   * Registers an uploaded ONNX file as a new version (stage NONE). The file is checked first: a file that breaks the
   * contract is refused with every problem named, and nothing is stored or registered. The same bytes registered again
   * return the version they already are.
   */
  async registerUploaded(em: EntityManager, caller: Caller, input: { modelName: string; uploadId: string }): Promise<ModelVersionEntity> {
    const modelName = checkModelName(input.modelName);
    if (!isUuid(input.uploadId)) throw notFound('Upload', input.uploadId);
    let reply;
    try {
      reply = await requestUploadResolution(this.options.broker, { tenant: caller.tenant, uploadIds: [input.uploadId] }, this.options.rpcTimeoutMs);
    } catch (error) {
      if (error instanceof BrokerTimeoutError) throw unavailable('The datasets service');
      throw error;
    }
    const upload = reply.uploads[0];
    if (!upload || !upload.ok) {
      if (!upload || upload.problem === 'NOT_FOUND') throw notFound('Upload', input.uploadId);
      throw badInput(upload.message, 'uploadId', { problem: upload.problem });
    }
    if (upload.byteSize > this.options.maxUploadBytes) throw badInput(`A model file may be at most ${this.options.maxUploadBytes} bytes`, 'uploadId');
    const bytes = await this.options.store.get(upload.objectKey);
    let checked;
    try {
      checked = await checkModelFile(bytes);
    } catch (error) {
      if (error instanceof ModelContractError) {
        throw badInput(`The file is not a usable change-detection model: ${error.problems.join('; ')}`, 'uploadId', { problem: error.problem, problems: error.problems });
      }
      throw error;
    }
    const contract = registryContract(checked);
    const sha256 = createHash('sha256').update(bytes).digest('hex');

    const existing = await this.repository.findRegisteredModelByName(em, caller.tenant, modelName);
    if (existing && existing.tenant === caller.tenant) {
      const same = await this.repository.findVersionsBySha256(em, caller.tenant, existing.id, sha256);
      if (same[0]) return same[0];
    }
    const artifactKey = modelArtifactKey(caller.tenant, modelName, sha256);
    const head = await this.options.store.head(artifactKey);
    if (!head || head.size !== bytes.length) await this.options.store.put(artifactKey, bytes, { contentType: 'application/octet-stream' });
    return this.registry.registerVersion(em, {
      tenant: caller.tenant,
      modelName,
      artifactKey,
      sha256,
      byteSize: bytes.length,
      metrics: {},
      contract,
      source: ModelVersionSource.UPLOADED,
      createdBy: caller.subject,
    });
  }

  /**
   * Moves a version to a stage. PRODUCTION needs the approver role (the permission rule checks it); taking the
   * Production version out of Production needs it too, which only the current stage tells, so it is checked here.
   */
  async transition(em: EntityManager, caller: Caller, versionId: string, stage: ModelStage, reason?: string | null): Promise<ModelVersionEntity> {
    if (!(MODEL_STAGES as string[]).includes(stage)) throw badInput(`stage must be one of ${MODEL_STAGES.join(', ')}`, 'stage');
    if (reason != null && reason.length > 500) throw badInput('reason must be at most 500 characters', 'reason');
    return this.registry.setStage(em, caller.tenant, versionId, stage, {
      changedBy: caller.subject,
      reason: reason ?? '',
      check: (version) => {
        if (version.stage === ModelStage.PRODUCTION && !hasCapability(caller.roles, 'approver')) {
          throw forbidden('Taking a version out of Production needs the approver role');
        }
      },
    });
  }

  /**
   * Restores the version that was in Production before the current one (the most recent earlier Production version
   * in the stage history); the current one is archived. Returns the version now in Production.
   */
  async rollback(em: EntityManager, caller: Caller, modelName: string): Promise<ModelVersionEntity> {
    const model = await this.repository.findRegisteredModelByName(em, caller.tenant, modelName);
    if (!model || model.tenant !== caller.tenant) throw notFound('RegisteredModel', modelName);
    const current = await this.repository.productionVersion(em, caller.tenant, model.id);
    const history = await this.repository.stageHistory(em, caller.tenant, model.id, 1000);
    const previous = history.find(
      (change) => change.toStage === ModelStage.PRODUCTION && change.modelVersion.id !== current?.id && change.modelVersion.stage !== ModelStage.PRODUCTION,
    );
    if (!previous) throw conflict(`Model ${modelName} has no earlier Production version to roll back to`, { modelName });
    const reason = current ? `rollback from version ${current.version} to version ${previous.modelVersion.version}` : `rollback to version ${previous.modelVersion.version}`;
    return this.registry.setStage(em, caller.tenant, previous.modelVersion.id, ModelStage.PRODUCTION, { changedBy: caller.subject, reason });
  }
}

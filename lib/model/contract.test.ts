import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ModelContractError, registryContract, validateModelContract } from './contract.js';
import { readOnnxMetadata, readOnnxModelInfo } from './onnx-metadata.js';
import { CONTRACT_METADATA, ensureTrainedModel, fakeOnnxModel, sharedData, type TrainedModel } from './testing.js';

function contractError(bytes: Uint8Array): ModelContractError {
  try {
    validateModelContract(bytes);
  } catch (error) {
    if (error instanceof ModelContractError) return error;
    throw error;
  }
  throw new Error('expected a ModelContractError');
}

const without = (key: string) => Object.fromEntries(Object.entries(CONTRACT_METADATA).filter(([k]) => k !== key));

describe('the ONNX metadata reader', () => {
  it('reads metadata_props, inputs and outputs with element types and symbolic or fixed dims', () => {
    const bytes = fakeOnnxModel({
      inputs: [
        { name: 'before', shape: ['batch', 3, 64, 64] },
        { name: 'after', dtype: 'uint8', shape: ['batch', 3, 'h', 'w'] },
      ],
    });
    const info = readOnnxModelInfo(bytes);
    expect(info.irVersion).toBe(8);
    expect(info.opsets).toEqual({ '': 17 });
    expect(info.producerName).toBe('pytorch');
    expect(info.inputs).toEqual([
      { name: 'before', dtype: 'float32', shape: ['batch', 3, 64, 64] },
      { name: 'after', dtype: 'uint8', shape: ['batch', 3, 'h', 'w'] },
    ]);
    expect(info.outputs.map((o) => o.name)).toEqual(['change_logits', 'embedding']);
    expect(readOnnxMetadata(bytes)).toEqual(CONTRACT_METADATA);
  });

  it('leaves initializers listed among the inputs (IR < 4) out of the inputs', () => {
    const bytes = fakeOnnxModel({
      irVersion: 3,
      initializers: ['conv.weight'],
      inputs: [{ name: 'before', shape: ['N', 3, 'H', 'W'] }, { name: 'after', shape: ['N', 3, 'H', 'W'] }, { name: 'conv.weight', shape: [8, 3, 3, 3] }],
    });
    expect(readOnnxModelInfo(bytes).inputs.map((i) => i.name)).toEqual(['before', 'after']);
    expect(() => validateModelContract(bytes)).not.toThrow();
  });
});

describe('validateModelContract', () => {
  it('accepts a model that follows the contract and returns what inference needs', () => {
    const contract = validateModelContract(fakeOnnxModel());
    expect(contract).toMatchObject({
      contractVersion: '1',
      bands: 3,
      bandNames: ['red', 'green', 'blue'],
      normalization: { mean: [0.4, 0.4, 0.4], std: [0.2, 0.2, 0.2], scale: 255 },
      tileSize: 64,
      sizeMultiple: 16,
      threshold: 0.5,
      outputActivation: 'sigmoid',
      embeddingDim: 32,
      architecture: 'SNUNet-CBAM',
      baseWidth: 8,
      datasetVersion: 'synthetic-v1-test',
    });
    expect(contract.inputs.map((i) => i.name)).toEqual(['before', 'after']);
    expect(registryContract(contract)).toEqual({
      bands: 3,
      bandNames: ['red', 'green', 'blue'],
      normalization: { mean: [0.4, 0.4, 0.4], std: [0.2, 0.2, 0.2] },
      tileSize: 64,
      threshold: 0.5,
      embeddingDim: 32,
      inputs: contract.inputs,
      outputs: contract.outputs,
    });
  });

  it('refuses what is not an ONNX file at all', () => {
    for (const bytes of [new Uint8Array(0), Buffer.from('hello, I am a text file\n'), randomBytes(4096)]) {
      const error = contractError(bytes);
      expect(error.problem).toBe('NOT_ONNX');
      expect(error.message).toMatch(/empty|not an ONNX model/);
    }
  });

  it('refuses a PNG and a truncated model as not ONNX', async () => {
    const png = await readFile(join(sharedData, 'levir-cd-256', 'A', 'test_7_0256_0512.png'));
    expect(contractError(png).problem).toBe('NOT_ONNX');
    const model = fakeOnnxModel();
    const error = contractError(model.subarray(0, model.length - 20));
    expect(error.problem).toBe('NOT_ONNX');
    expect(error.message).toMatch(/truncated|past the end/);
  });

  it('refuses a model without a graph version or nodes', () => {
    expect(contractError(fakeOnnxModel({ irVersion: null })).message).toMatch(/no ir_version/);
    expect(contractError(fakeOnnxModel({ nodes: 0 })).message).toMatch(/no graph nodes/);
  });

  it('names inputs with the wrong names, and inputs it would not feed', () => {
    const error = contractError(
      fakeOnnxModel({ inputs: [{ name: 'image_a', shape: ['N', 3, 'H', 'W'] }, { name: 'after', shape: ['N', 3, 'H', 'W'] }] }),
    );
    expect(error.problem).toBe('GRAPH');
    expect(error.message).toContain('missing before');
    expect(error.message).toContain('inputs the contract does not feed: image_a');
  });

  it('names missing outputs', () => {
    const error = contractError(fakeOnnxModel({ outputs: [{ name: 'logits', shape: ['N', 1, 'H', 'W'] }] }));
    expect(error.message).toContain('missing change_logits, embedding');
  });

  it('names a wrong element type, a wrong rank and a wrong channel count', () => {
    const error = contractError(
      fakeOnnxModel({
        inputs: [
          { name: 'before', dtype: 'uint8', shape: ['N', 3, 'H', 'W'] },
          { name: 'after', shape: ['N', 4, 'H', 'W'] },
        ],
        outputs: [
          { name: 'change_logits', shape: ['N', 2, 'H', 'W'] },
          { name: 'embedding', dtype: 'float64', shape: ['N', 32, 1] },
        ],
      }),
    );
    expect(error.problem).toBe('GRAPH');
    expect(error.problems).toEqual(
      expect.arrayContaining([
        'input before must be float32, not uint8',
        'input after has 4 on axis 1, the contract needs 3',
        'output change_logits has 2 on axis 1, the contract needs 1',
        'output embedding must be float32, not float64',
        'output embedding must have rank 2, not 3 [N×32×1]',
      ]),
    );
  });

  it('names a fixed spatial size that tiles cannot take, and an embedding size that contradicts the metadata', () => {
    const error = contractError(
      fakeOnnxModel({
        inputs: [{ name: 'before', shape: [1, 3, 32, 32] }, { name: 'after', shape: [1, 3, 32, 32] }],
        outputs: [{ name: 'change_logits', shape: [1, 1, 32, 32] }, { name: 'embedding', shape: [1, 16] }],
      }),
    );
    expect(error.message).toContain('input before has a fixed size 32 on axis 2, but lcd.tile_size is 64');
    expect(error.message).toContain('output embedding has 16 on axis 1, the contract needs 32');
  });

  it('names missing metadata', () => {
    const error = contractError(fakeOnnxModel({ metadata: without('lcd.normalization') }));
    expect(error.problem).toBe('METADATA');
    expect(error.message).toContain('metadata lacks lcd.normalization');
    const none = contractError(fakeOnnxModel({ metadata: {} }));
    expect(none.message).toContain('metadata lacks lcd.contract_version, lcd.bands, lcd.band_names');
  });

  it('names each bad metadata value', () => {
    const cases: [Record<string, string>, string][] = [
      [{ 'lcd.contract_version': '7' }, 'lcd.contract_version "7" is not supported'],
      [{ 'lcd.bands': 'three' }, 'lcd.bands must be an integer'],
      [{ 'lcd.band_names': '["red","green"]' }, 'lcd.band_names lists 2 name(s) for 3 band(s)'],
      [{ 'lcd.band_names': 'red,green,blue' }, 'lcd.band_names must be a JSON array'],
      [{ 'lcd.normalization': '{"mean":[0,0,0],"std":[0,1,1]}' }, 'positive std'],
      [{ 'lcd.normalization': '{"mean":[0,0,0],"std":[1,1,1],"scale":-1}' }, 'lcd.normalization.scale must be a positive number'],
      [{ 'lcd.normalization': 'not json' }, 'lcd.normalization must be a JSON object'],
      [{ 'lcd.tile_size': '100' }, 'lcd.tile_size 100 is not a multiple of lcd.size_multiple 16'],
      [{ 'lcd.threshold': '1.5' }, 'lcd.threshold must be a number between 0 and 1'],
      [{ 'lcd.output_activation': 'softmax' }, 'lcd.output_activation must be one of sigmoid, identity'],
      [{ 'lcd.embedding_dim': '0' }, 'lcd.embedding_dim must be an integer'],
    ];
    for (const [override, message] of cases) {
      const error = contractError(fakeOnnxModel({ metadata: { ...CONTRACT_METADATA, ...override } }));
      expect(error.message, JSON.stringify(override)).toContain(message);
    }
  });

  it('takes normalisation without scale as 8-bit (255)', () => {
    const contract = validateModelContract(
      fakeOnnxModel({ metadata: { ...CONTRACT_METADATA, 'lcd.normalization': '{"mean":[0.5,0.5,0.5],"std":[0.25,0.25,0.25]}' } }),
    );
    expect(contract.normalization.scale).toBe(255);
  });
});

describe('a model exported by the project trainer', () => {
  let model: TrainedModel;
  beforeAll(async () => {
    model = await ensureTrainedModel();
  }, 15 * 60_000);

  it('satisfies the contract, with the metadata train.py writes', (ctx) => {
    if (!model.ok) return ctx.skip(model.reason);
    const contract = validateModelContract(model.bytes);
    expect(contract).toMatchObject({ bands: 3, tileSize: 64, sizeMultiple: 16, embeddingDim: 32, outputActivation: 'sigmoid', baseWidth: 8 });
    expect(contract.inputs).toEqual([
      { name: 'before', dtype: 'float32', shape: ['batch', 3, 'height', 'width'] },
      { name: 'after', dtype: 'float32', shape: ['batch', 3, 'height', 'width'] },
    ]);
    expect(contract.configHash).toMatch(/^[0-9a-f]{64}$/);
    expect(contract.datasetVersion).toMatch(/^synthetic-v1-/);
  });
});

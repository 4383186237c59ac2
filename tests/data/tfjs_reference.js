// Reference run of a TFJS graph model with npm's pure-JS @tensorflow/tfjs (CPU backend, no native binary): how
// tests/data/tfjs_reference_pose_mask.npz was made (scripts/tfjs_reference.py drives it). Not needed by any test.
// usage: node tfjs_reference.js model.json input.bin int32|float32 H W output.bin (raw little-endian arrays)
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
async function main() {
  const [jsonPath, inPath, dtype, h, w, outPath] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const model = JSON.parse(fs.readFileSync(jsonPath));
  const dir = path.dirname(jsonPath);
  const specs = [], bufs = [];
  for (const g of model.weightsManifest) {
    specs.push(...g.weights);
    for (const p of g.paths) bufs.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(bufs);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const handler = { load: async () => ({ modelTopology: model.modelTopology, weightSpecs: specs, weightData,
                                         format: model.format, generatedBy: model.generatedBy,
                                         convertedBy: model.convertedBy, signature: model.signature,
                                         userDefinedMetadata: model.userDefinedMetadata }) };
  const gm = await tf.loadGraphModel(handler);
  const raw = fs.readFileSync(inPath);
  const ab = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
  const data = dtype === 'int32' ? new Int32Array(ab) : new Float32Array(ab);
  const x = tf.tensor(data, [1, +h, +w, 3], dtype);
  const y = gm.execute(x);
  const out = await (Array.isArray(y) ? y[0] : y).data();
  fs.writeFileSync(outPath, Buffer.from(new Float32Array(out).buffer));
  console.log(tf.getBackend(), (Array.isArray(y) ? y[0] : y).shape.join('x'), out.slice(0, 6).join(' '));
}
main().catch(e => { console.error(e); process.exit(1); });

// Reference run of a TFJS graph model with npm's pure-JS @tensorflow/tfjs (CPU backend, no native binary): how
// tests/data/tfjs_reference_pose_mask.npz was made. Not needed by any test.
// usage: node tfjs_reference.js model.json input.bin int32|float32 H W output.bin [OUT1:0,OUT2:0,...]
//   input.bin / output.bin: raw little-endian arrays (NHWC input); with output names each goes to output.bin.<i>
// The inputs (kept in the .npz): scikit-image's astronaut, camera (grey to RGB) and coffee resized with OpenCV's
// INTER_AREA to 192 and 256; int32 RGB for MoveNet, float32 RGB / 255 for Selfie and BlazePose (outputs
// Identity_2:0 landmarks and Identity_3:0 pose flag); @tensorflow/tfjs 4 (npm install under /tmp), node 20.
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
async function main() {
  const [jsonPath, inPath, dtype, h, w, outPath, names] = process.argv.slice(2);
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
  // optional comma-separated output names: each written to outPath.<i>; without them the first output to outPath
  const wanted = names ? names.split(',') : null;
  const y = wanted ? gm.execute(x, wanted) : gm.execute(x);
  const outs = Array.isArray(y) ? (wanted ? y : [y[0]]) : [y];
  for (let i = 0; i < outs.length; i++) {
    const out = await outs[i].data();
    fs.writeFileSync(wanted ? outPath + '.' + i : outPath, Buffer.from(new Float32Array(out).buffer));
    console.log(tf.getBackend(), outs[i].shape.join('x'), out.slice(0, 6).join(' '));
  }
}
main().catch(e => { console.error(e); process.exit(1); });

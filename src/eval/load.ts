/** Finding and loading the checkpoint an evaluation or generation runs on. */
import { UserError } from "../cli/errors.ts";
import { type Checkpoint, CONFIG_FILE, loadCheckpoint, MODEL_FILE } from "../model/checkpoint.ts";
import { BYTES_VOCAB, loadTokenizer, type Tokenizer } from "../data/tokenizer.ts";

async function isFile(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isFile;
  } catch {
    return false;
  }
}

/**
 * Loads a checkpoint from `path`: a checkpoint folder (config.json + model.safetensors), or a
 * run folder written by `train` (its checkpoint/, or checkpoint.old/ after a cut save).
 */
export async function openCheckpoint(path: string): Promise<Checkpoint & { dir: string }> {
  for (const dir of [path, `${path}/checkpoint`, `${path}/checkpoint.old`]) {
    if (await isFile(`${dir}/${CONFIG_FILE}`)) {
      if (!(await isFile(`${dir}/${MODEL_FILE}`))) {
        throw new UserError(`${dir}: has ${CONFIG_FILE} but no ${MODEL_FILE}`);
      }
      return { ...(await loadCheckpoint(dir)), dir };
    }
  }
  let exists = false;
  try {
    exists = (await Deno.stat(path)).isDirectory;
  } catch { /* reported below */ }
  throw new UserError(
    exists
      ? `${path}: not a checkpoint (no ${CONFIG_FILE} in it, nor in ${path}/checkpoint)`
      : `${path}: no such checkpoint folder`,
  );
}

/** The tokenizer a checkpoint was trained with (stored by `train`), unless one is forced. */
export async function checkpointTokenizer(
  ck: Checkpoint,
  forced?: string,
): Promise<Tokenizer> {
  const spec = forced ?? ck.metadata.tokenizer ??
    (ck.config.vocabSize === BYTES_VOCAB ? "bytes" : "qwen");
  const tok = await loadTokenizer(spec);
  if (tok.vocabSize > ck.config.vocabSize) {
    throw new UserError(
      `tokenizer '${spec}' has ${tok.vocabSize} tokens but the checkpoint's vocabulary is ` +
        `${ck.config.vocabSize} (pass --tokenizer)`,
    );
  }
  return tok;
}

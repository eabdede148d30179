/** Finding and loading the checkpoint an evaluation or generation runs on. */
import { UserError } from "../util/errors.ts";
import type { Checkpoint } from "../model/checkpoint.ts";
import { BYTES_VOCAB, loadTokenizer, type Tokenizer } from "../data/tokenizer.ts";

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

/**
 * One line per subcommand, shown by `infini --help` and at the top of the command's own help.
 * Kept apart from the commands so that `infini --help` loads none of them.
 */
export const SUMMARIES = {
  info: "show the WebGPU adapter, its limits and features",
  train: "pre-train a model on token shards or a built-in synthetic task (passkey, recall)",
  gen: "turn text corpora into packed token shards for training",
  eval: "long-context perplexity and passkey retrieval, memory on and off",
  generate: "continue a prompt of any length, streaming tokens as they come",
  demo: "train a small model on a built-in retrieval task and show its memory at work",
} as const;

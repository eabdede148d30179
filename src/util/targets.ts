/**
 * The convention of next-token target arrays, shared by everything that makes targets (the
 * shard and task batch sources, evaluation) and everything that reads them (the model, the
 * cross-entropy op). kernels/xent.wgsl holds the same value as its own WGSL constant.
 */

/** Target id meaning "no loss at this position" (a sequence's last token, padding, a prompt). */
export const IGNORE_TARGET = 0xffffffff;

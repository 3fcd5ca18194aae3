"""Every `minilm` command, in one place (README; docs/instructors.md):

- `commands`: the `minilm` entry point: `about`, `prepare` (a corpus -> a token folder, `minilm.data.tokenfile`),
  `pretrain`, `make-exercises` and `grade` (`minilm.grading`)
- `pretrain`: `minilm pretrain`, one option per field of GPTConfig, TrainConfig and PretrainOptions, under
  torchrun too

The top of the chain: commands import the stages below them, nothing imports a command.
"""

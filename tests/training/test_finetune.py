"""Fine-tuning rows: the context a pair is trained in is the one it is sampled in, and only the
completion is scored."""

from codex_jax.training import finetune


class CharTokenizer:
    """One id per character (ord + 2); 0 = end of document, 1 = padding."""

    eod_id, pad_id = 0, 1

    def encode(self, text):
        return [ord(c) + 2 for c in text]

    def encode_prompt(self, text):  # as the project's tokenizer (and its sampler) start a prompt
        return [self.eod_id] + self.encode(text)


class BosTokenizer(CharTokenizer):
    """An imported tokenizer's way: a BOS (id 2) first, no end-of-document."""

    def encode_prompt(self, text):
        return [2] + self.encode(text)


def test_a_row_starts_with_end_of_document_and_scores_only_completion_and_its_end():
    pairs = [{"prompt": "ab", "completion": "xyz"}, {"prompt": "p" * 9, "completion": "c"}]
    rows, masks, too_long = finetune.encode_pairs(pairs, CharTokenizer(), seq_len=8, name="t")
    assert too_long == 1 and rows.shape == (1, 9) and masks.shape == (1, 8)
    # As the sampler prepends end-of-document to every prompt (and every pretraining document
    # follows one), the row does: eod, a, b, x, y, z, eod, then padding.
    assert rows[0].tolist() == [0, 99, 100, 122, 123, 124, 0, 1, 1]
    # Target t is rows[t + 1]: the targets x, y, z and the closing eod are scored, nothing else.
    assert masks[0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]


def test_a_row_starts_as_the_sampler_starts_the_prompt_for_an_imported_tokenizer():
    rows, masks, _ = finetune.encode_pairs(
        [{"prompt": "ab", "completion": "x"}], BosTokenizer(), seq_len=6, name="t"
    )
    assert rows[0].tolist() == [2, 99, 100, 122, 0, 1, 1]
    assert masks[0].tolist() == [0, 0, 1, 1, 0, 0]

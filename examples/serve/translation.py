"""Translation: a language classifier picks which of two seq2seq transformers translates the text.

The paper's NMT pipeline (Cloudflow's flow/pipelines/nmt.py: a language detector on one text, then fairseq's
English-to-French or English-to-German model on another), CPU-sized: a character-level classifier (a linear
model over character counts), then one of two small encoder-decoder transformers (2 layers, width 64,
greedy decoding of up to 24 characters), each marked high-variance, so the server races two replicas of it
and cancels the loser (competitive execution). Models are built in code with fixed seeds, so the
"translations" are deterministic gibberish: what is measured is the serving, not the French.

    reflow serve examples/serve/translation.py --port 8000
    python examples/serve/translation.py
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from reflow.serve import Flow

ALPHABET = " abcdefghijklmnopqrstuvwxyzéèàçäöüß.,?!'"
VOCAB = len(ALPHABET) + 2  # + start and end of text
START, END = len(ALPHABET), len(ALPHABET) + 1
MAX_IN, MAX_OUT = 48, 16

FRENCH = ["Je m'appelle Pierre.", "Comment allez-vous aujourd'hui?", "La nuit est longue et froide.",
          "On veut aller dehors mais il faut rester dedans."]
GERMAN = ["Ich bin ein Berliner.", "Die Katze sitzt auf dem Stuhl.", "Sie schwimmt im Regen.",
          "Ich gehe in den Supermarkt, aber mir ist kalt."]
ENGLISH = ["What is the weather like today?", "Why does it rain so much in April?",
           "I like running but my ankles hurt.", "I should go home to eat dinner before it gets late."]


def encode(text: str) -> list[int]:
    return [ALPHABET.index(c) for c in text.lower() if c in ALPHABET][:MAX_IN]


class Language:
    """Text -> "fr" or "de": naive Bayes over character pairs, trained here on the example sentences."""

    def __init__(self) -> None:
        self.logp = {lang: self._fit(texts) for lang, texts in (("fr", FRENCH), ("de", GERMAN))}

    @staticmethod
    def _pairs(text: str) -> np.ndarray:
        codes = encode(text)
        return np.array([a * len(ALPHABET) + b for a, b in itertools.pairwise(codes)], np.int64)

    def _fit(self, texts: list[str]) -> np.ndarray:
        counts = np.ones(len(ALPHABET) ** 2)  # add-one smoothing
        for t in texts:
            np.add.at(counts, self._pairs(t), 1)
        return np.log(counts / counts.sum())  # type: ignore[no-any-return]

    def __call__(self, classify: str) -> str:
        pairs = self._pairs(classify)
        return max(self.logp, key=lambda lang: float(self.logp[lang][pairs].sum()))


class Translator:
    """A small transformer, greedy-decoding one text at a time (the row's answer never depends on others)."""

    seed = 0

    def __init__(self) -> None:
        torch.manual_seed(self.seed)
        torch.set_num_threads(1)
        self.embed = torch.nn.Embedding(VOCAB, 32)
        self.pos = torch.nn.Parameter(torch.randn(MAX_IN + MAX_OUT + 1, 32) * 0.1)
        self.model = torch.nn.Transformer(32, 4, 1, 1, 64, dropout=0.0, batch_first=True).eval()
        self.out = torch.nn.Linear(32, VOCAB)

    def __call__(self, translate: str) -> str:
        src = torch.tensor([encode(translate) or [0]])
        with torch.no_grad():
            memory = self.model.encoder(self.embed(src) + self.pos[:src.shape[1]])
            tokens = [START]
            for _ in range(MAX_OUT):
                tgt = torch.tensor([tokens])
                mask = self.model.generate_square_subsequent_mask(len(tokens))
                h = self.model.decoder(self.embed(tgt) + self.pos[:len(tokens)], memory, tgt_mask=mask)
                nxt = int(self.out(h[0, -1]).argmax())
                if nxt == END:
                    break
                tokens.append(nxt)
        return "".join(ALPHABET[t] for t in tokens[1:] if t < len(ALPHABET))


class ToFrench(Translator):
    seed = 21


class ToGerman(Translator):
    seed = 22


def is_french(language: str) -> bool:
    return language == "fr"


def is_german(language: str) -> bool:
    return language == "de"


flow = Flow("translation", {"classify": str, "translate": str})
languages = flow.map(Language, keep=["translate"], name="language")
french = languages.filter(is_french).map(ToFrench, name="french", high_variance=True)
german = languages.filter(is_german).map(ToGerman, name="german", high_variance=True)
french.join(german, how="outer")

def requests(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [(str(rng.choice(FRENCH + GERMAN)), str(rng.choice(ENGLISH))) for _ in range(n)]


if __name__ == "__main__":
    for row in flow.run(flow.table(requests(4))).to_records():
        print(row)

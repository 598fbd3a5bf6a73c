#!/usr/bin/env python3
"""Writes pretok_oracle.json: pre-tokenizer splits computed with the
third-party `regex` module (Unicode properties, lookahead) from the split
patterns of the tokenizers, for TestPreTokenizersOracle.

Run from this folder: python3 pretok_oracle.py (needs `pip install regex`).
The strings avoid characters whose Unicode properties changed recently, so
the Go tables and the module's tables agree on them.
"""
import json
import random

import regex

GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN2 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
TEKKEN = (r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"""
          r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"""
          r"""\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


def isolated(pattern, text):
    """Split text into matches and the gaps between them (HF "Isolated")."""
    out, pos = [], 0
    for m in regex.finditer(pattern, text):
        if m.start() > pos:
            out.append(text[pos:m.start()])
        if m.end() > m.start():
            out.append(m.group())
        pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    return out


def smollm(text):
    out = []
    for piece in isolated(r"\p{N}", text):
        out.extend(isolated(GPT2, piece))
    return out


SPLITS = {
    "gpt2": lambda s: isolated(GPT2, s),
    "llama3": lambda s: isolated(LLAMA3, s),
    "qwen2": lambda s: isolated(QWEN2, s),
    "smollm": smollm,
    "tekken": lambda s: isolated(TEKKEN, s),
}

POOL = (list("abcxyzABCXYZ") * 4 + list("0123456789") * 2 + [" "] * 12 +
        ["\t", "\n", "\n", "\r", "\x0b", "\x0c", "\x85", "\u00a0", "\u3000", "\u2028"] +
        list("'''.,!?$()/-:;\"") + ["sS", "tT", "re", "VE", "ll", "d", "m"] +
        ["日", "本", "の", "テ", "ー", "🦙", "😀", "\u0301", "\u0308", "ж", "Ж", "Σ", "σ",
         "²", "٣", "Ⅻ", "ǅ", "ʰ", "क", "\u094d", "\u200d", "\u200b", "\u2581", "é", "ß"])

FIXED = [
    "Hello world", "I'm you're they'll we've he'd it's can't", "DON'T STOP",
    "1 12 123 1234 12345 123456 1234567", "   leading and trailing   ",
    "a\n\nb\r\n\r\nc \n d\t\n\te", "...!!!???", "(parens) [brackets] {braces}",
    "日本語のテキスト、です。", "emoji 🦙🦙 and 😀!", "e\u0301te na\u0308ive",
    "CamelCaseWords and ALLCAPS and mixedUP", "path/to/file.txt://x//y",
    "$100.50 or 2,000€", "tab\tsep\tvalues", "x" * 5 + " " * 7 + "y",
]


def main():
    rng = random.Random(20260101)
    texts = list(FIXED)
    for _ in range(120):
        texts.append("".join(rng.choice(POOL) for _ in range(rng.randint(1, 16))))
    cases = []
    for text in texts:
        for name, split in SPLITS.items():
            pieces = split(text)
            assert "".join(pieces) == text
            cases.append({"pre": name, "text": text, "pieces": pieces})
    with open("pretok_oracle.json", "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()

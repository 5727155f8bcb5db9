"""How far the offline token estimate is from the exact BERT WordPiece count, per kind of text.

The estimate is what the client uses for models whose vocabulary does not ship (Qwen3, unknown
ids). It should never count fewer tokens than the model (a piece cut by it must fit), and not
many more (or pieces are needlessly short). Samples come from files already on disk: English
prose from the Python documentation (`pydoc_data.topics`), code from the standard library's
sources, CJK from the standard library's `test/cjkencodings` (when installed) plus a few
sentences written for this benchmark.

    python benchmarks/token_estimates.py
"""

from __future__ import annotations

import sysconfig
from pathlib import Path
from pydoc_data.topics import topics

from nebula_core._tokens import count_tokens, estimate_tokens, truncate_to_tokens

BERT = "WhereIsAI/UAE-Large-V1"
CHUNK_CHARS = 1500
LIMIT = 512

CJK_SENTENCES = """\
向量数据库把每段文本保存为一个嵌入向量、查询时按余弦相似度排序。
检索增强生成先找出相关段落、再把它们交给语言模型回答问题。
長い文書はチャンクに分割してから埋め込みを計算します。
検索クエリには専用の指示文を付けると精度が上がることがあります。
임베딩 모델은 문장을 고정 길이의 벡터로 바꿉니다.
긴 입력은 잘라내거나 여러 조각의 평균으로 처리할 수 있습니다.
"""


def chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size) if text[i : i + size].strip()]


def english() -> list[str]:
    return chunks("\n\n".join(topics[key] for key in sorted(topics)))[:300]


def code() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = ["asyncio/tasks.py", "json/decoder.py", "argparse.py", "dataclasses.py", "typing.py"]
    return chunks("\n".join((stdlib / name).read_text(encoding="utf-8") for name in names))[:300]


def cjk() -> list[str]:
    folder = Path(sysconfig.get_paths()["stdlib"]) / "test" / "cjkencodings"
    texts = [CJK_SENTENCES * 4]
    texts += [path.read_text(encoding="utf-8") for path in sorted(folder.glob("*-utf8.txt"))]
    return chunks("\n".join(texts), 500)


def measure(name: str, samples: list[str]) -> str:
    exact = [count_tokens(BERT, text) for text in samples]
    guess = [estimate_tokens(text) for text in samples]
    ratios = [g / e for g, e in zip(guess, exact, strict=True)]
    under = sum(r < 1 for r in ratios)
    # How much of a 512-token limit a prefix cut by the estimate actually uses.
    long_texts = [text for text, e in zip(samples, exact, strict=True) if e > LIMIT] or [
        "\n".join(samples)
    ]
    used = [
        count_tokens(BERT, truncate_to_tokens("unknown/model", text, LIMIT)) / LIMIT
        for text in long_texts
    ]
    return (
        f"| {name} | {len(samples)} | {sum(exact):,} | {sum(guess) / sum(exact):.2f} | "
        f"{min(ratios):.2f} | {max(ratios):.2f} | {under} | {min(used):.0%}-{max(used):.0%} |"
    )


def main() -> None:
    print(
        "| text | chunks | exact tokens | estimate / exact | lowest | highest | "
        "chunks under-counted | limit used by an estimated cut |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, samples in (("English prose", english()), ("Python code", code()), ("CJK", cjk())):
        print(measure(name, samples))


if __name__ == "__main__":
    main()

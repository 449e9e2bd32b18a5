"""Price books: the two built-in variants and user files."""

from __future__ import annotations

import pytest

from batchwise.config.prices import BUILTIN_PRICE_BOOKS, DEFAULT_PRICE_BOOK, load_prices
from batchwise.errors import ConfigError
from utils import write


def test_default_is_the_fc_book(prices_fc):
    assert DEFAULT_PRICE_BOOK == "alibaba-fc-2023"
    assert load_prices(None) is prices_fc
    assert prices_fc.variant == "fc"
    assert prices_fc.vcpu_per_s == 0.00009
    assert prices_fc.memory_per_gb_s == 0.000009
    assert prices_fc.gpu_memory_per_gb_s == 0.00011
    assert prices_fc.invocation == pytest.approx(0.009 / 10_000)
    assert prices_fc.gpu_billing_granularity_s == 1.0
    assert prices_fc.cpu_billing_granularity_s == 0.0
    assert prices_fc.gpu_bills_host is True
    assert prices_fc.gpu_vcpu_per_gb == pytest.approx(1 / 3)


def test_paper_book_is_eq6(prices_paper):
    assert load_prices("paper-eq6") is prices_paper
    assert (prices_paper.vcpu_per_s, prices_paper.gpu_memory_per_gb_s) == (1.3e-5, 1.5e-5)
    assert prices_paper.invocation == 1.3e-7
    assert prices_paper.memory_per_gb_s == 0.0
    assert prices_paper.gpu_billing_granularity_s == 0.0
    assert prices_paper.gpu_bills_host is False


def test_unknown_price_book_name_errors():
    with pytest.raises(ConfigError) as exc:
        load_prices("aws-2024")
    msg = str(exc.value)
    assert "'aws-2024'" in msg
    for name in BUILTIN_PRICE_BOOKS:
        assert name in msg


def test_price_book_yaml_file_loads(tmp_path):
    p = write(
        tmp_path / "book.yaml",
        "name: cheap\nvariant: paper\ncurrency: USD\nvcpu_per_s: 1.0e-5\n"
        "gpu_memory_per_gb_s: 2.0e-5\ninvocation: 1.0e-7\ngpu_memory_gb_max: 16\n",
    )
    book = load_prices(p)
    assert book.name == "cheap" and book.variant == "paper" and book.currency == "USD"
    assert book.vcpu_per_s == 1.0e-5 and book.gpu_memory_gb_max == 16
    assert book.gpu_billing_granularity_s == 1.0  # default


def test_price_book_file_errors_name_field_and_line(tmp_path):
    p = write(tmp_path / "book.yaml", "name: x\nvcpu_per_s: -1\ngpu_memory_per_gb_s: 1\n")
    with pytest.raises(ConfigError, match=r"book\.yaml:2: vcpu_per_s: "):
        load_prices(p)
    p = write(
        tmp_path / "range.yaml",
        "name: x\nvcpu_per_s: 1\ngpu_memory_per_gb_s: 1\nvcpu_min: 4\nvcpu_max: 2\n",
    )
    with pytest.raises(ConfigError, match="vcpu_min must not exceed vcpu_max"):
        load_prices(p)

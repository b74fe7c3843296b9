"""Reading and writing the build's Parquet files on local disk or object storage, byte-for-byte stable.

Every file the build writes goes through `write_table`: fixed compression and row-group size and no
per-run metadata, so a re-run on the same input writes identical bytes.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from cprec.core import storage

ROW_GROUP_ROWS = 64 * 1024
TOKEN_ROW_GROUP_ROWS = 1024  # 512-token blocks: ~6 MB per row group, the trainer's unit of reading


def write_table(table: pa.Table, uri: str, row_group_rows: int = ROW_GROUP_ROWS) -> None:
    fs, path = storage.filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(
        table,
        path,
        filesystem=fs,
        row_group_size=row_group_rows,
        compression="zstd",
        write_statistics=True,
        store_schema=True,
    )


def read_table(uri: str, schema: pa.Schema | None = None, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file or a directory of them (only `columns`, when given); a missing directory is an
    empty table of `schema`."""
    if schema is not None and not storage.exists(uri):
        return schema.empty_table() if columns is None else schema.empty_table().select(columns)
    fs, path = storage.filesystem(uri)
    dataset = pads.dataset(path, filesystem=fs, format="parquet", schema=schema, exclude_invalid_files=False)
    return dataset.to_table(columns=columns)


def remove(uri: str) -> None:
    fs, path = storage.filesystem(uri)
    if storage.exists(uri):
        fs.delete_dir(path)

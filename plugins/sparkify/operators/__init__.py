from sparkify.operators.anomalies import AnomalyChecksOperator
from sparkify.operators.load import LoadDimensionOperator, LoadFactOperator
from sparkify.operators.quality import ColumnChecksOperator, TableChecksOperator
from sparkify.operators.stage import StageToRedshiftOperator
from sparkify.operators.warehouse_sql import WarehouseSQLOperator

__all__ = [
    "AnomalyChecksOperator",
    "ColumnChecksOperator",
    "LoadDimensionOperator",
    "LoadFactOperator",
    "StageToRedshiftOperator",
    "TableChecksOperator",
    "WarehouseSQLOperator",
]

from sparkify.operators.load import LoadDimensionOperator, LoadFactOperator
from sparkify.operators.stage import StageToRedshiftOperator
from sparkify.operators.warehouse_sql import WarehouseSQLOperator

__all__ = ["LoadDimensionOperator", "LoadFactOperator", "StageToRedshiftOperator", "WarehouseSQLOperator"]

from sparkify.operators.load import LoadDimensionOperator, LoadFactOperator
from sparkify.operators.quality import QualityChecksOperator
from sparkify.operators.stage import StageToRedshiftOperator

__all__ = [
    "LoadDimensionOperator",
    "LoadFactOperator",
    "QualityChecksOperator",
    "StageToRedshiftOperator",
]

"""Final-answer extraction and one checker per answer type, chosen by data_source."""

from exgrpo_verl.answers.extract import Extracted, extract_final_answer
from exgrpo_verl.answers.grade import grade
from exgrpo_verl.answers.verdict import Verdict

__all__ = ["Extracted", "Verdict", "extract_final_answer", "grade"]

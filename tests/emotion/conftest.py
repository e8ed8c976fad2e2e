import pytest


@pytest.fixture(scope="session")
def emotion_model():
    from emotional_engine.emotion import EmotionModel

    return EmotionModel.load()

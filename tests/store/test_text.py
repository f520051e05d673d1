from store.text import korean_keywords, link_share


def test_a_korean_question_keeps_its_content_words_and_drops_particles_endings_and_punctuation() -> None:
    question = "파드가 계속 재시작되면서 CrashLoopBackOff 떠요. 죽기 전 컨테이너 로그는 어떻게 봐요?"
    words = korean_keywords(question).split()

    assert {"파드", "컨테이너", "로그", "CrashLoopBackOff"} <= set(words)
    assert not {"가", "는", "면서", "?", ".", "어떻게", "봐요", "떠요"} & set(words)


def test_a_question_without_content_words_is_searched_as_it_is() -> None:
    assert korean_keywords("어떻게 해요?") == "어떻게 해요?"


def test_link_share_counts_urls_and_markdown_links_with_their_text() -> None:
    assert link_share("") == 0.0
    assert link_share("Restart the pool, then check the queue.") == 0.0
    assert link_share("https://example.com/a") == 1.0
    text = "See [docs](https://x.io) now"
    assert link_share(text) == len("[docs](https://x.io)") / len(text)

"""Deterministic sample data shaped like the public Udacity Sparkify dataset.

    python -m scripts.sample_data --out DIR [--seed 42] [--songs 300]
        [--start-day 2018-11-01] [--days 3] [--events-per-day 3000]
        [--match-share 0.6] [--users 60] [--overwrite]

Writes the same layout and schema as s3://udacity-dend:

    song_data/A/B/C/TRABC....json          one song object per file, one line
    log_data/YYYY/MM/YYYY-MM-DD-events.json  JSON lines, one event per line
    log_json_path.json                     Redshift JSONPaths for the events

Everything comes from one ``random.Random(seed)``, so the same seed and knobs
give byte-identical files. Events are streamed to disk: at any moment only
the sessions currently running are held in memory, never a day of events.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import shutil
import string
import sys
from datetime import date, timedelta
from pathlib import Path

# Key order of one event line and of one song file, as in the real dataset.
EVENT_KEYS = (
    "artist", "auth", "firstName", "gender", "itemInSession", "lastName",
    "length", "level", "location", "method", "page", "registration",
    "sessionId", "song", "status", "ts", "userAgent", "userId",
)
SONG_KEYS = (
    "num_songs", "artist_id", "artist_latitude", "artist_longitude",
    "artist_location", "artist_name", "song_id", "title", "duration", "year",
)

DAY_MS = 86_400_000
MEAN_SESSION_EVENTS = 20
_ID_CHARS = string.ascii_uppercase + string.digits

# HTTP method and status per page, following the real logs: form submissions
# and log in/out answer with a 307 redirect, the error page with a 404.
PAGE_HTTP = {
    "NextSong": ("PUT", 200),
    "Home": ("GET", 200),
    "Login": ("PUT", 307),
    "Logout": ("PUT", 307),
    "Settings": ("GET", 200),
    "Save Settings": ("PUT", 307),
    "Upgrade": ("GET", 200),
    "Submit Upgrade": ("PUT", 307),
    "Downgrade": ("GET", 200),
    "Submit Downgrade": ("PUT", 307),
    "Help": ("GET", 200),
    "About": ("GET", 200),
    "Error": ("GET", 404),
}

# Relative page weights while logged in; NextSong dominates like in the real
# logs. "Upgrade" is only offered to free users and "Downgrade" to paid ones.
_LOGGED_IN_WEIGHTS = {
    "NextSong": 80.0, "Home": 4.5, "Settings": 1.2, "Help": 1.0,
    "About": 0.4, "Error": 0.3, "Logout": 1.0,
}
_LOGGED_OUT_WEIGHTS = {"Home": 3.0, "About": 1.0, "Help": 1.0, "Login": 5.0}
# Chance that a page is followed by its form submission.
_FOLLOW_UPS = {
    "Settings": ("Save Settings", 0.4),
    "Upgrade": ("Submit Upgrade", 0.45),
    "Downgrade": ("Submit Downgrade", 0.35),
}
_LOGGED_OUT_START_SHARE = 0.1  # sessions that begin before logging in
_SKIP_SHARE = 0.1  # songs skipped before they end

# --- vocabularies -----------------------------------------------------------
# Names deliberately mix ASCII with accented and Japanese text so that
# encoding bugs downstream show up on sample data, not in production.

_FEMALE_NAMES = (
    "Kaylee", "Lily", "Jayden", "Tegan", "Chloe", "Aleena", "Jacqueline",
    "Rylan", "Layla", "Sara", "Katherine", "Ava", "Mia", "Harper", "Olivia",
    "Zoë", "Chloé", "Anaïs", "Renée", "Inès", "Lucía", "Małgorzata", "Saoirse",
    "Dagný", "Yūko",
)
_MALE_NAMES = (
    "Walter", "Jacob", "Kevin", "Ryan", "Lucas", "Noah", "Wyatt", "Cienna",
    "Matthew", "Connar", "Theodore", "Jordan", "Ethan", "Liam", "Mason",
    "José", "Björn", "Søren", "Jürgen", "François", "Łukasz", "Ángel", "Jiří",
    "Håkon", "Kenji",
)
_LAST_NAMES = (
    "Frye", "Koch", "Levine", "Cruz", "Harrell", "Summers", "Roth", "Klein",
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis",
    "Garcia", "Rodriguez", "Wilson", "Martinez", "Anderson", "Taylor",
    "Thomas", "Moore", "Jackson", "Martin", "Lee", "O'Connor", "Müller",
    "Núñez", "Østergaard", "Sánchez", "Çelik", "Dvořák", "Jönsson", "Peña",
    "Gauthier", "Ólafsdóttir", "Yamamoto", "Wójcik",
)
_USER_LOCATIONS = (
    "San Francisco-Oakland-Hayward, CA", "Lansing-East Lansing, MI",
    "Atlanta-Sandy Springs-Roswell, GA", "Chicago-Naperville-Elgin, IL-IN-WI",
    "New York-Newark-Jersey City, NY-NJ-PA", "Los Angeles-Long Beach-Anaheim, CA",
    "Houston-The Woodlands-Sugar Land, TX", "Phoenix-Mesa-Scottsdale, AZ",
    "Portland-South Portland, ME", "Waterloo-Cedar Falls, IA",
    "Tampa-St. Petersburg-Clearwater, FL", "Seattle-Tacoma-Bellevue, WA",
    "Santa Maria-Santa Barbara, CA", "Birmingham-Hoover, AL",
    "Detroit-Warren-Dearborn, MI", "Miami-Fort Lauderdale-West Palm Beach, FL",
    "Denver-Aurora-Lakewood, CO", "Cañon City, CO", "Red Bluff, CA",
    "Janesville-Beloit, WI", "Winston-Salem, NC", "Tucson, AZ",
)
# The real logs wrap agents that contain a comma in literal double quotes
# (an artefact of the CSV they came from); we keep that quirk.
_USER_AGENTS = (
    '"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_4) AppleWebKit/537.36 '
    '(KHTML, like Gecko) Chrome/36.0.1985.143 Safari/537.36"',
    '"Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like '
    'Gecko) Chrome/36.0.1985.143 Safari/537.36"',
    '"Mozilla/5.0 (Windows NT 6.3; WOW64) AppleWebKit/537.36 (KHTML, like '
    'Gecko) Chrome/36.0.1985.143 Safari/537.36"',
    '"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) '
    'Ubuntu Chromium/36.0.1985.125 Chrome/36.0.1985.125 Safari/537.36"',
    '"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_4) AppleWebKit/537.78.2 '
    '(KHTML, like Gecko) Version/7.0.6 Safari/537.78.2"',
    '"Mozilla/5.0 (iPhone; CPU iPhone OS 7_1_2 like Mac OS X) '
    'AppleWebKit/537.51.2 (KHTML, like Gecko) Version/7.0 Mobile/11D257 '
    'Safari/9537.53"',
    "Mozilla/5.0 (Windows NT 6.1; WOW64; rv:31.0) Gecko/20100101 Firefox/31.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.9; rv:31.0) Gecko/20100101 "
    "Firefox/31.0",
    "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1; WOW64; Trident/6.0)",
)
# Artists that always get songs when there is room for them (enough songs),
# so that unicode and Japanese names are present with the default knobs.
_FEATURED_ARTISTS = (
    "Björk", "Beyoncé", "Sigur Rós", "Mötley Crüe", "Motörhead", "Hüsker Dü",
    "Blue Öyster Cult", "Céline Dion", "Maná", "Mø", "宇多田ヒカル",
    "坂本龍一", "きゃりーぱみゅぱみゅ", "Radiohead", "Daft Punk", "Coldplay",
    "The Black Keys", "Kings Of Leon", "Florence + The Machine", "Muse",
    "Dwight Yoakam", "Des'ree", "Line Renaud", "Casual", "Jack Johnson",
)
_JAPANESE_ARTISTS = frozenset({"宇多田ヒカル", "坂本龍一", "きゃりーぱみゅぱみゅ"})
_JAPANESE_TITLES = (
    "ファースト・ラヴ", "さくらさくら", "夜に駆ける", "上を向いて歩こう",
    "戦場のメリークリスマス", "つけまつける", "花束を君に", "東京の空",
)
_ACCENTED_TITLES = (
    "Hoppípolla", "Jóga", "Déjà Vu", "Für Elise", "Señorita", "Café del Mar",
    "Ça plane pour moi", "Niño Bonito", "Él No Te Da", "Sæglópur",
    "Smörgåsbord", "Übermensch",
)
_ADJECTIVES = (
    "Blue", "Broken", "Golden", "Silent", "Electric", "Lonely", "Wild",
    "Midnight", "Burning", "Sweet", "Hollow", "Crimson", "Distant", "Frozen",
    "Little", "Lost", "Neon", "Paper", "Restless", "Velvet", "Wicked",
    "Bitter", "Endless", "Fading", "Gentle", "Holy", "Lazy", "Sunny",
    "Heavy", "Secret",
)
_NOUNS = (
    "Heart", "River", "Highway", "Summer", "Dream", "Fire", "Rain", "Sky",
    "Night", "Road", "Light", "Ocean", "Moon", "Garden", "City", "Shadow",
    "Train", "Window", "Mountain", "Radio", "Letter", "Angel", "Ghost",
    "Diamond", "Thunder", "Island", "Mirror", "Morning", "Storm", "Wire",
)
_VERBS = (
    "Dancing", "Running", "Waiting", "Falling", "Burning", "Dreaming",
    "Driving", "Flying", "Singing", "Walking", "Holding", "Chasing",
)
_PREPOSITIONS = ("in", "on", "under", "through", "across", "with", "after")
_SUFFIXES = ("", "", "", "", " (Live)", " (Remastered)", " (Radio Edit)",
             " (Acoustic)", " (Album Version)", " (Remix)")
_ARTIST_PLACES = (
    # (location, latitude, longitude); latitude None means "no coordinates"
    ("California - LA", 34.05349, -118.24532),
    ("Hamtramck, MI", 42.39267, -83.04968),
    ("Detroit, MI", 42.33168, -83.04792),
    ("Nashville, TN", 36.16778, -86.77836),
    ("Chicago, IL", 41.88415, -87.63241),
    ("New York, NY", 40.71455, -74.00712),
    ("London, England", 51.50632, -0.12714),
    ("Reykjavík, Iceland", 64.13548, -21.89541),
    ("Montréal, Québec, Canada", 45.51228, -73.55439),
    ("Tokyo, Japan", 35.68949, 139.69171),
    ("São Paulo, Brazil", -23.54894, -46.63882),
    ("Berlin, Germany", 52.51607, 13.37698),
    ("Stockholm, Sweden", 59.33217, 18.06243),
    ("Paris, France", 48.85693, 2.3412),
    ("Guadalajara, México", 20.67601, -103.34751),
    ("Austin, TX", 30.26759, -97.74299),
    ("Seattle, WA", 47.60356, -122.32944),
    ("Dublin, Ireland", 53.34376, -6.24953),
)
_UNMATCHED_TITLE_TRIES = 50


# --- small helpers ----------------------------------------------------------

def _random_id(rng, prefix: str, taken: set) -> str:
    """An id like the real ones ("TR" + 16 upper alphanumerics), unique."""
    while True:
        value = prefix + "".join(rng.choices(_ID_CHARS, k=16))
        if value not in taken:
            taken.add(value)
            return value


def _epoch_ms(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY_MS


def _sorted_uniforms(rng, count: int):
    """Yield `count` uniform [0, 1) values in ascending order, one at a time.

    Each value is the minimum of the uniforms still to come, drawn directly
    from its distribution, so nothing has to be generated and sorted up front.
    """
    value = 0.0
    for left in range(count, 0, -1):
        value = 1.0 - (1.0 - value) * rng.random() ** (1.0 / left)
        yield min(value, 0.9999999999)


def _song_title(rng, japanese: bool) -> str:
    if japanese:
        return rng.choice(_JAPANESE_TITLES)
    roll = rng.random()
    if roll < 0.08:
        return rng.choice(_ACCENTED_TITLES)
    if roll < 0.45:
        base = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    elif roll < 0.75:
        base = (f"{rng.choice(_VERBS)} {rng.choice(_PREPOSITIONS)} the "
                f"{rng.choice(_NOUNS)}")
    else:
        base = f"{rng.choice(_NOUNS)} of {rng.choice(_NOUNS)}"
    return base + rng.choice(_SUFFIXES)


def _artist_name(rng) -> str:
    roll = rng.random()
    if roll < 0.4:
        first = rng.choice(_FEMALE_NAMES + _MALE_NAMES)
        return f"{first} {rng.choice(_LAST_NAMES)}"
    if roll < 0.75:
        return f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}s"
    return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"


def _song_seconds(rng) -> float:
    # Real durations cluster around four minutes and carry five decimals.
    return round(min(max(rng.gauss(240.0, 70.0), 25.0), 900.0), 5)


class _User:
    __slots__ = ("user_id", "first_name", "last_name", "gender", "location",
                 "user_agent", "registration", "level")


class _Session:
    """A running session: only what is needed to produce its next event."""

    __slots__ = ("session_id", "user", "item", "remaining", "ts", "end_ms",
                 "logged_in", "pending")


class _DayFiles:
    """Hands out the open log file of an event's UTC day, opening the day
    files strictly in order (a day without events still gets its file)."""

    def __init__(self, log_root: Path, start_day: date, days: int):
        self.log_root = log_root
        self.start_ms = _epoch_ms(start_day)
        self.start_day = start_day
        self.days = days
        self.index = -1
        self.file = None
        self.end_ms = self.start_ms  # end of the open file's day

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        # Make sure every day has a file, then close the last one.
        while self.index < self.days - 1:
            self._open_next()
        self.file.close()

    def _open_next(self):
        if self.file is not None:
            self.file.close()
        self.index += 1
        day = self.start_day + timedelta(days=self.index)
        folder = self.log_root / f"{day:%Y}" / f"{day:%m}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{day:%Y-%m-%d}-events.json"
        self.file = path.open("w", encoding="utf-8", newline="\n")
        self.end_ms = self.start_ms + (self.index + 1) * DAY_MS

    def write(self, ts: int, line: str):
        while ts >= self.end_ms:
            self._open_next()
        self.file.write(line)


class _Generator:
    def __init__(self, rng, *, songs: int, users: int, start_ms: int,
                 match_share: float):
        self.rng = rng
        self.match_share = match_share
        # (title, artist_name, duration) of every generated song, to let a
        # share of the events play exactly these songs.
        self.catalog: list[tuple[str, str, float]] = []
        self.song_titles: set[str] = set()
        self.song_count = songs
        self.users = self._make_users(users, start_ms)
        self.unmatched_counter = 0
        self.next_session_id = 1
        self._encoder = json.JSONEncoder(ensure_ascii=False,
                                         separators=(",", ":"))

    # -- songs ---------------------------------------------------------------

    def songs(self):
        """Yield (track_id, song dict) for every song, in generation order."""
        rng = self.rng
        artists = self._make_artists(max(1, round(self.song_count * 2 / 3)))
        track_ids: set[str] = set()
        song_ids: set[str] = set()
        for index in range(self.song_count):
            # The first songs go one per artist so every artist (notably the
            # featured ones) has at least one song; the rest pick at random.
            artist = artists[index] if index < len(artists) else rng.choice(artists)
            title = _song_title(rng, artist["artist_name"] in _JAPANESE_ARTISTS)
            duration = _song_seconds(rng)
            # About four in ten real songs have an unknown year, stored as 0.
            year = 0 if rng.random() < 0.4 else rng.randint(1959, 2010)
            song = {
                "num_songs": 1,
                **artist,
                "song_id": _random_id(rng, "SO", song_ids),
                "title": title,
                "duration": duration,
                "year": year,
            }
            self.catalog.append((title, artist["artist_name"], duration))
            self.song_titles.add(title)
            yield _random_id(rng, "TR", track_ids), song

    def _make_artists(self, count: int) -> list[dict]:
        rng = self.rng
        featured = list(_FEATURED_ARTISTS)
        rng.shuffle(featured)
        names = featured[:count] + [_artist_name(rng)
                                    for _ in range(count - len(featured))]
        artist_ids: set[str] = set()
        artists = []
        for name in names:
            place, lat, lon = rng.choice(_ARTIST_PLACES)
            if rng.random() < 0.45:
                # Many real artists have no coordinates, often no location.
                lat = lon = None
                if rng.random() < 0.5:
                    place = ""
            else:
                lat = round(lat + rng.uniform(-0.05, 0.05), 5)
                lon = round(lon + rng.uniform(-0.05, 0.05), 5)
            artists.append({
                "artist_id": _random_id(rng, "AR", artist_ids),
                "artist_latitude": lat,
                "artist_longitude": lon,
                "artist_location": place,
                "artist_name": name,
            })
        return artists

    def _pick_song(self) -> tuple[str, str, float]:
        rng = self.rng
        if rng.random() < self.match_share:
            return rng.choice(self.catalog)
        # A song missing from song_data, like most plays in the real logs.
        # Its title must not collide with any generated title.
        artist = rng.choice(self.catalog)[1] if rng.random() < 0.5 else _artist_name(rng)
        for _ in range(_UNMATCHED_TITLE_TRIES):
            title = _song_title(rng, japanese=False)
            if title not in self.song_titles:
                break
        else:
            # Title space exhausted by a huge catalog: "(Demo #n)" is never
            # produced for song files, so this is guaranteed to be unmatched.
            self.unmatched_counter += 1
            title = f"{title} (Demo #{self.unmatched_counter})"
        return title, artist, _song_seconds(rng)

    # -- users ---------------------------------------------------------------

    def _make_users(self, count: int, start_ms: int) -> list[_User]:
        rng = self.rng
        ids = rng.sample(range(2, 2 + 3 * count), count)
        users = []
        for user_id in ids:
            user = _User()
            user.user_id = str(user_id)
            user.gender = rng.choice("FM")
            names = _FEMALE_NAMES if user.gender == "F" else _MALE_NAMES
            user.first_name = rng.choice(names)
            user.last_name = rng.choice(_LAST_NAMES)
            user.location = rng.choice(_USER_LOCATIONS)
            user.user_agent = rng.choice(_USER_AGENTS)
            user.registration = float(
                start_ms - rng.randint(DAY_MS, 200 * DAY_MS))
            user.level = "paid" if rng.random() < 0.3 else "free"
            users.append(user)
        return users

    # -- events --------------------------------------------------------------

    def write_events(self, log_root: Path, start_day: date, days: int,
                     events_per_day: int) -> int:
        """Write all days' events, sorted by ts, streaming line by line.

        Sessions start at sorted uniform times within their day; a heap keyed
        by each running session's next timestamp merges them into one ordered
        stream. The timeline is continuous, so a session running at midnight
        goes on in the next day's file, as in the real logs. Returns the
        number of files written.
        """
        first_ms = _epoch_ms(start_day)
        last_ms = first_ms + days * DAY_MS  # sessions are squeezed before this
        busy: dict[str, int] = {}  # user_id -> running sessions
        heap: list[tuple[int, int, _Session]] = []
        with _DayFiles(log_root, start_day, days) as out:
            for offset in range(days):
                day_ms = first_ms + offset * DAY_MS
                for start, length in self._plan_sessions(day_ms, events_per_day):
                    # Emit every event that happens before this session starts.
                    while heap and heap[0][0] < start:
                        self._emit_next(heap, busy, out)
                    session = self._open_session(start, last_ms, length, busy)
                    heapq.heappush(heap, (session.ts, session.session_id, session))
            while heap:
                self._emit_next(heap, busy, out)
        return days

    def _plan_sessions(self, day_ms: int, events: int):
        """Yield (start ts, number of events) of one day's sessions, by start.

        Lengths are 1 plus the spacings between sorted random cut points over
        the remaining events, so they sum exactly to `events` while looking
        like independent, mostly short sessions.
        """
        rng = self.rng
        sessions = min(events, max(1, round(events / MEAN_SESSION_EVENTS)))
        starts = _sorted_uniforms(rng, sessions)
        cuts = _sorted_uniforms(rng, max(sessions - 1, 0))
        extra = events - sessions
        previous_cut = 0
        for index in range(sessions):
            start = day_ms + int(next(starts) * DAY_MS)
            cut = int(next(cuts) * extra) if index < sessions - 1 else extra
            yield start, 1 + cut - previous_cut
            previous_cut = cut

    def _open_session(self, start: int, end_ms: int, length: int,
                      busy: dict) -> _Session:
        rng = self.rng
        # Prefer a user who is not already listening, so one user's events
        # tell a consistent story; with very few users overlap is allowed.
        for _ in range(8):
            user = rng.choice(self.users)
            if not busy.get(user.user_id):
                break
        busy[user.user_id] = busy.get(user.user_id, 0) + 1
        session = _Session()
        session.session_id = self.next_session_id
        self.next_session_id += 1
        session.user = user
        session.item = 0
        session.remaining = length
        session.ts = start
        session.end_ms = end_ms
        if rng.random() < _LOGGED_OUT_START_SHARE:
            session.logged_in, session.pending = False, "Home"
        else:
            session.logged_in = True
            session.pending = "Home" if rng.random() < 0.4 else None
        return session

    def _emit_next(self, heap, busy, out) -> None:
        _, session_id, session = heapq.heappop(heap)
        ts = session.ts
        out.write(ts, self._encoder.encode(self._event(session)) + "\n")
        if session.remaining:
            heapq.heappush(heap, (session.ts, session_id, session))
        else:
            busy[session.user.user_id] -= 1

    def _choose_page(self, session: _Session) -> str:
        rng = self.rng
        user = session.user
        pending, session.pending = session.pending, None
        if not session.logged_in:
            if pending:
                return pending
            pages, weights = zip(*_LOGGED_OUT_WEIGHTS.items())
            return rng.choices(pages, weights)[0]
        # A submission only makes sense if the level still allows it (the
        # same user may have changed level in a parallel session).
        if pending == "Submit Upgrade" and user.level != "free":
            pending = None
        if pending == "Submit Downgrade" and user.level != "paid":
            pending = None
        if pending:
            return pending
        if session.remaining == 1 and rng.random() < 0.25:
            return "Logout"  # many sessions end with an explicit log out
        weights = dict(_LOGGED_IN_WEIGHTS)
        if user.level == "free":
            weights["Upgrade"] = 1.2
        else:
            weights["Downgrade"] = 0.8
        pages, values = zip(*weights.items())
        return rng.choices(pages, values)[0]

    def _event(self, session: _Session) -> dict:
        """Build the session's next event and advance the session."""
        rng = self.rng
        user = session.user
        page = self._choose_page(session)
        method, status = PAGE_HTTP[page]
        artist = song = length = None
        if page == "NextSong":
            song, artist, length = self._pick_song()
            song_ms = int(length * 1000)
            # The next event comes when the song ends, or earlier if skipped.
            if rng.random() < _SKIP_SHARE:
                gap = rng.randint(5_000, max(song_ms, 5_000))
            else:
                gap = song_ms + rng.randint(0, 2_000)
        else:
            gap = rng.randint(2_000, 90_000)

        logged_in = session.logged_in
        event = {
            "artist": artist,
            "auth": "Logged In" if logged_in else "Logged Out",
            "firstName": user.first_name if logged_in else None,
            "gender": user.gender if logged_in else None,
            "itemInSession": session.item,
            "lastName": user.last_name if logged_in else None,
            "length": length,
            "level": user.level,
            "location": user.location if logged_in else None,
            "method": method,
            "page": page,
            "registration": user.registration if logged_in else None,
            "sessionId": session.session_id,
            "song": song,
            "status": status,
            "ts": session.ts,
            "userAgent": user.user_agent if logged_in else None,
            "userId": user.user_id if logged_in else "",
        }

        # State changes take effect from the next event on.
        if page == "Login":
            session.logged_in = True
        elif page == "Logout":
            session.logged_in, session.pending = False, "Home"
        elif page == "Submit Upgrade":
            user.level = "paid"
        elif page == "Submit Downgrade":
            user.level = "free"
        elif page in _FOLLOW_UPS:
            follow_up, chance = _FOLLOW_UPS[page]
            if rng.random() < chance:
                session.pending = follow_up

        session.item += 1
        session.remaining -= 1
        if session.remaining:
            # Never take more than a fair share of the time left before the
            # last day ends, so the final sessions fit in the dataset.
            time_left = session.end_ms - 1 - session.ts
            session.ts += min(gap, time_left // session.remaining)
        return event


def _jsonpaths() -> str:
    return json.dumps({"jsonpaths": [f"$['{key}']" for key in EVENT_KEYS]},
                      indent=4) + "\n"


def generate(out_dir: Path, *, seed: int = 42, songs: int = 300,
             start_day: date = date(2018, 11, 1), days: int = 3,
             events_per_day: int = 3000, match_share: float = 0.6,
             users: int = 60, overwrite: bool = False,
             pretty_songs: bool = False, events_per_line: int = 1,
             crlf: bool = False) -> dict:
    """Write a Sparkify-shaped dataset under `out_dir` and return counts.

    Returns {"songs", "events", "users", "files"}. Refuses to write over an
    existing dataset unless `overwrite` is true (then it is replaced).

    The layout knobs change how the same records are written, never which:
    `pretty_songs` indents each song file over several lines (as Redshift's
    COPY documentation writes JSON), `events_per_line` puts that many events
    on each log line, and `crlf` ends lines with CR LF.
    """
    if events_per_line < 1:
        raise ValueError("events_per_line must be >= 1")
    if songs < 1 or users < 1 or days < 1 or events_per_day < 0:
        raise ValueError("songs, users and days must be >= 1, "
                         "events_per_day >= 0")
    if not 0.0 <= match_share <= 1.0:
        raise ValueError("match_share must be between 0 and 1")

    out_dir = Path(out_dir)
    song_root, log_root = out_dir / "song_data", out_dir / "log_data"
    jsonpaths = out_dir / "log_json_path.json"
    if song_root.exists() or log_root.exists() or jsonpaths.exists():
        if not overwrite:
            raise FileExistsError(
                f"{out_dir} already holds a dataset; use an empty directory "
                "or overwrite=True (--overwrite)")
        # Old files would otherwise mix with the new ones.
        shutil.rmtree(song_root, ignore_errors=True)
        shutil.rmtree(log_root, ignore_errors=True)
        jsonpaths.unlink(missing_ok=True)

    rng = random.Random(seed)
    gen = _Generator(rng, songs=songs, users=users,
                     start_ms=_epoch_ms(start_day), match_share=match_share)

    files = 0
    for track_id, song in gen.songs():
        folder = song_root.joinpath(*track_id[2:5])
        folder.mkdir(parents=True, exist_ok=True)
        # Single line without trailing newline, like the real song files.
        (folder / f"{track_id}.json").write_text(
            json.dumps(song, ensure_ascii=False), encoding="utf-8")
        files += 1

    files += gen.write_events(log_root, start_day, days, events_per_day)

    jsonpaths.write_text(_jsonpaths(), encoding="utf-8")
    files += 1
    _relayout(song_root, log_root, pretty_songs, events_per_line, crlf)
    return {"songs": songs, "events": days * events_per_day,
            "users": users, "files": files}


def _relayout(song_root: Path, log_root: Path, pretty_songs: bool,
              events_per_line: int, crlf: bool) -> None:
    """Rewrite the files in another layout that COPY's JSON reader accepts."""
    newline = "\r\n" if crlf else "\n"
    if pretty_songs or crlf:
        for path in song_root.rglob("*.json"):
            song = json.loads(path.read_text(encoding="utf-8"))
            text = json.dumps(song, ensure_ascii=False, indent=4 if pretty_songs else None)
            path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    if events_per_line > 1 or crlf:
        for path in log_root.rglob("*.json"):
            lines = path.read_text(encoding="utf-8").split("\n")[:-1]
            grouped = [" ".join(lines[i:i + events_per_line])
                       for i in range(0, len(lines), events_per_line)]
            path.write_bytes("".join(line + newline for line in grouped).encode("utf-8"))


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.sample_data",
        description="Write deterministic Sparkify-shaped sample data.")
    parser.add_argument("--out", required=True, type=Path,
                        help="output directory")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--songs", type=int, default=300)
    parser.add_argument("--start-day", type=date.fromisoformat,
                        default=date(2018, 11, 1), help="YYYY-MM-DD (UTC)")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--events-per-day", type=int, default=3000)
    parser.add_argument("--match-share", type=_share, default=0.6,
                        help="share of NextSong events that play a generated song")
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a dataset already in --out")
    parser.add_argument("--pretty-songs", action="store_true",
                        help="indent each song file over several lines")
    parser.add_argument("--events-per-line", type=int, default=1,
                        help="events on each log line, space-separated")
    parser.add_argument("--crlf", action="store_true",
                        help="end lines with CR LF")
    args = parser.parse_args(argv)
    try:
        counts = generate(
            args.out, seed=args.seed, songs=args.songs,
            start_day=args.start_day, days=args.days,
            events_per_day=args.events_per_day, match_share=args.match_share,
            users=args.users, overwrite=args.overwrite,
            pretty_songs=args.pretty_songs,
            events_per_line=args.events_per_line, crlf=args.crlf)
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    print(f"wrote {counts['songs']} songs and {counts['events']} events "
          f"for {counts['users']} users ({counts['files']} files) "
          f"to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

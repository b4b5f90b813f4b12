import { useCallback, useState } from 'react';
import Layout from './components/Layout.jsx';
import MovieDetail from './components/MovieDetail.jsx';
import PopularSection from './components/PopularSection.jsx';
import RecommendationSection from './components/RecommendationSection.jsx';
import SearchBox from './components/SearchBox.jsx';
import SearchResults from './components/SearchResults.jsx';
import Toast from './components/Toast.jsx';
import UserPicker from './components/UserPicker.jsx';
import { displayTitle, listNames } from './format.js';
import { useAsync, useDebouncedValue, useOpinions, useSessionState } from './hooks.js';
import { recommend, recommendForLiked, sendFeedback } from './services/api.js';
import { RECOMMENDATION_COUNT, SEARCH_DELAY_MS } from './services/config.js';
import { visitorId } from './services/session.js';

const ids = (movies) => movies.map((movie) => movie.movie_id);

export default function App() {
  const [query, setQuery] = useState('');
  const search = useDebouncedValue(query.trim(), SEARCH_DELAY_MS);
  const [userId, setUserId] = useSessionState('movierec.user', null);
  const [visitor] = useState(visitorId);
  const { liked, disliked, opinionOf, setOpinion } = useOpinions();
  const [selected, setSelected] = useState(null);
  const [notice, setNotice] = useState(null);
  const clearNotice = useCallback(() => setNotice(null), []);

  const exclude = ids(disliked);
  const forYou = useAsync(
    (signal) => (userId ? recommend(userId, { k: RECOMMENDATION_COUNT, exclude }, { signal }) : Promise.resolve(null)),
    [userId, exclude.join()],
  );
  const fromLikes = useAsync(
    (signal) =>
      liked.length
        ? recommendForLiked(ids(liked), { k: RECOMMENDATION_COUNT, exclude }, { signal })
        : Promise.resolve(null),
    [ids(liked).join(), exclude.join()],
  );

  // Feedback names the selected dataset user, else this session's anonymous visitor, and the
  // impression the movie was shown in.
  function record(movie, event) {
    sendFeedback({
      userId: userId ?? visitor,
      movieId: movie.movie_id,
      event,
      impressionId: movie.impression_id,
    }).catch((error) => setNotice(`Your ${event} was not recorded: ${error.message}`));
  }

  function open(movie) {
    setSelected(movie);
    record(movie, 'click');
  }

  function judge(movie, opinion) {
    setOpinion(movie, opinion);
    if (opinion) record(movie, opinion);
  }

  const grid = { opinionOf, onOpen: open, onOpinion: judge };
  const hasHistory = !forYou.loading && forYou.data?.fallback === false;

  return (
    <>
      <Layout
        inert={selected !== null}
        controls={
          <>
            <SearchBox value={query} onChange={setQuery} />
            <UserPicker userId={userId} onChange={setUserId} />
          </>
        }
      >
        {search ? (
          <SearchResults key={search} query={search} grid={grid} />
        ) : (
          <>
            {userId && (
              <RecommendationSection
                title="Recommended for you"
                fallbackNote="No history for this user: showing popular movies"
                state={forYou}
                grid={grid}
              />
            )}
            {liked.length > 0 && (
              <RecommendationSection
                title={`Because you liked ${listNames(liked.map((movie) => displayTitle(movie.title)))}`}
                fallbackNote="Nobody has rated the movies you liked yet: showing popular movies"
                state={fromLikes}
                grid={grid}
              />
            )}
            <PopularSection
              note={
                !userId && liked.length === 0
                  ? 'Like a few movies (♥) to get recommendations from them, or enter a user id above.'
                  : null
              }
              grid={grid}
            />
          </>
        )}
      </Layout>
      {selected && (
        <MovieDetail
          movie={selected}
          userId={userId}
          knownUser={hasHistory}
          grid={grid}
          onClose={() => setSelected(null)}
        />
      )}
      <Toast message={notice} onDone={clearNotice} />
    </>
  );
}

import { displayTitle } from '../format.js';
import { HeartIcon, NotForMeIcon } from './Icons.jsx';

const CHOICES = [
  { opinion: 'like', label: 'Like', Icon: HeartIcon },
  { opinion: 'dislike', label: 'Not for me', Icon: NotForMeIcon },
];

/** Like / not-for-me toggles; pressing the pressed one again clears the opinion. */
export default function OpinionButtons({ movie, opinion, onOpinion, withLabels = false }) {
  const title = displayTitle(movie.title);
  return (
    <div className="opinions">
      {CHOICES.map(({ opinion: choice, label, Icon }) => (
        <button
          key={choice}
          type="button"
          className={`opinion opinion-${choice}`}
          aria-pressed={opinion === choice}
          aria-label={`${label}: ${title}`}
          title={label}
          onClick={() => onOpinion(movie, opinion === choice ? null : choice)}
        >
          <Icon />
          {withLabels && <span>{label}</span>}
        </button>
      ))}
    </div>
  );
}

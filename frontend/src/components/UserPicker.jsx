import { useState } from 'react';
import { CloseIcon } from './Icons.jsx';

/** Choose a dataset user id to see their recommendations; empty means an anonymous visitor. */
export default function UserPicker({ userId, onChange }) {
  const [draft, setDraft] = useState(userId ?? '');

  function submit(event) {
    event.preventDefault();
    const id = Number(draft);
    onChange(draft !== '' && Number.isSafeInteger(id) && id > 0 ? id : null);
  }

  function clear() {
    setDraft('');
    onChange(null);
  }

  return (
    <form className="user-picker" onSubmit={submit}>
      <label htmlFor="user-id">User id</label>
      <input
        id="user-id"
        type="number"
        min="1"
        step="1"
        inputMode="numeric"
        placeholder="e.g. 1"
        value={draft}
        onChange={(event) => setDraft(event.target.value)}
      />
      <button type="submit" className="button">
        Show
      </button>
      {userId !== null && (
        <button type="button" className="icon-button" aria-label={`Stop viewing as user ${userId}`} onClick={clear}>
          <CloseIcon />
        </button>
      )}
    </form>
  );
}

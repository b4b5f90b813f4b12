import { SearchIcon } from './Icons.jsx';

export default function SearchBox({ value, onChange }) {
  return (
    <form className="search" role="search" onSubmit={(event) => event.preventDefault()}>
      <label htmlFor="search-input" className="visually-hidden">
        Search movies by title
      </label>
      <SearchIcon />
      <input
        id="search-input"
        type="search"
        placeholder="Search movies by title"
        autoComplete="off"
        value={value}
        onChange={(event) => onChange(event.target.value)}
      />
    </form>
  );
}
